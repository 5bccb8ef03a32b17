"""A project of many images: labels matched by name, shapes checked, project files, the
on-disk stack whose context never crosses volumes, and the selection across images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_distill.core.preprocess import Normalization, as_stack, slice_input
from napari_distill.core.project.files import (
    Project,
    ProjectError,
    ProjectImage,
    load_project,
    project_from_paths,
)
from napari_distill.core.project.stack import build_project_stack
from napari_distill.core.quality import ProjectSelection, Selection
from synthetic import fixed_disk_square_volume


def _write_project(root, n_images=3, labelled=(0,), labels_name="{}_labels.tif"):
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for k in range(n_images):
        image, truth = fixed_disk_square_volume(seed=k)
        tifffile.imwrite(root / "images" / f"fish{k}.tif", image)
        if k in labelled:
            labels = np.zeros_like(truth)
            labels[[1, 3, 5, 6]] = truth[[1, 3, 5, 6]]
            tifffile.imwrite(root / "labels" / labels_name.format(f"fish{k}"), labels)
    return root


def test_labels_matched_by_name(tmp_path):
    root = _write_project(tmp_path, labelled=(0, 2))
    (root / "labels" / "fish2_labels.tif").rename(root / "labels" / "fish2.tif")
    project = project_from_paths(str(root / "images" / "*.tif"), root / "labels")
    assert project.names == ("fish0", "fish1", "fish2")
    assert [i.labels is not None for i in project.images] == [True, False, True]
    assert project.images[2].labels.name == "fish2.tif"
    project.check()


def test_two_labels_files_for_one_image_are_refused(tmp_path):
    root = _write_project(tmp_path)
    tifffile.imwrite(root / "labels" / "fish0.tif", np.zeros((8, 32, 32), np.uint8))
    with pytest.raises(ProjectError, match="fish0_labels.tif"):
        project_from_paths(str(root / "images" / "*.tif"), root / "labels")


def test_labels_of_another_shape_are_refused_with_their_name(tmp_path):
    root = _write_project(tmp_path)
    tifffile.imwrite(root / "labels" / "fish1_labels.tif", np.ones((8, 30, 32), np.uint8))
    project = project_from_paths(str(root / "images" / "*.tif"), root / "labels")
    with pytest.raises(ProjectError, match=r"fish1_labels\.tif.*\(8, 30, 32\).*fish1\.tif"):
        project.check()


def test_a_project_without_labels_is_refused(tmp_path):
    root = _write_project(tmp_path, labelled=())
    with pytest.raises(ProjectError, match="no image of the project has labels"):
        project_from_paths(str(root / "images"), root / "labels").check()


def test_names_must_be_distinct():
    image = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(ProjectError, match="appear twice"):
        Project((ProjectImage("a", image), ProjectImage("a", image)))


def test_project_files_toml_and_json_repeat_a_run(tmp_path):
    root = _write_project(tmp_path)
    (root / "p.toml").write_text(
        'images = "images/*.tif"\nlabels_dir = "labels"\n[settings]\nsteps = 5\ntau = 0.5\n'
    )
    project = load_project(root / "p.toml")
    assert project.names == ("fish0", "fish1", "fish2")
    assert project.images[0].labels == root / "labels" / "fish0_labels.tif"
    assert dict(project.settings) == {"steps": 5, "tau": 0.5}
    saved = project.save(root / "project.json")
    assert json.loads(saved.read_text())["images"][0]["image"] == "images/fish0.tif"
    again = load_project(saved)
    assert again.names == project.names and again.images[0].labels.samefile(
        project.images[0].labels
    )
    assert dict(again.settings) == dict(project.settings)
    (root / "list.json").write_text(
        json.dumps({"images": [{"image": "images/fish1.tif", "name": "one"}, "images/fish2.tif"]})
    )
    listed = load_project(root / "list.json")
    assert listed.names == ("one", "fish2") and listed.labelled == ()
    (root / "bad.toml").write_text("images = [")
    with pytest.raises(ProjectError, match="bad.toml"):
        load_project(root / "bad.toml")


@pytest.mark.parametrize("pad", [0, 2])
def test_the_stack_never_mixes_context_across_volumes(tmp_path, pad):
    volumes = [fixed_disk_square_volume(n=n, seed=k) for k, n in enumerate((5, 3, 6))]
    labels = [truth if k == 1 else None for k, (_, truth) in enumerate(volumes)]
    stack = build_project_stack(
        ((f"v{k}", image, labels[k], False) for k, (image, _) in enumerate(volumes)),
        [5, 3, 6],
        tmp_path,
        pad,
    )
    assert stack.image.shape[0] == 14 + 4 * pad
    norm = Normalization((0.0,), (1.0,))
    for k, (image, _) in enumerate(volumes):
        span = stack.spans[k]
        np.testing.assert_array_equal(stack.volume(f"v{k}"), image)
        for i in range(span.n):  # every slice's context is its own volume's, clamped
            np.testing.assert_array_equal(
                slice_input(as_stack(stack.image), span.start + i, norm, pad),
                slice_input(as_stack(image), i, norm, pad),
            )
            assert stack.to_local(stack.to_global(f"v{k}", i)) == (f"v{k}", i)
    np.testing.assert_array_equal(
        stack.labels[stack.spans[1].start : stack.spans[1].stop], labels[1]
    )
    assert int(np.count_nonzero(stack.labels)) == int(np.count_nonzero(labels[1]))


def test_a_volume_of_another_slice_size_is_refused_by_name(tmp_path):
    a = np.zeros((2, 8, 8), np.float32)
    b = np.zeros((2, 8, 9), np.float32)
    with pytest.raises(ValueError, match="b's slices"):
        build_project_stack(iter([("a", a, None, False), ("b", b, None, False)]), [2, 2], tmp_path)


def test_a_short_scale_sizes_the_last_axes_of_an_array_image():
    # the Pap sample's (0.5, 0.5) pixel size on a stack of fields: read, and later written
    # with the labels, not refused after the teacher has trained
    fields = np.zeros((3, 8, 8), np.float32)
    data, _ = ProjectImage("smear", fields, scale=(0.5, 0.5)).read()
    assert data.scale == (1.0, 0.5, 0.5)
    data, _ = ProjectImage("smear", fields).read()
    assert data.scale == (1.0, 1.0, 1.0)


def test_a_wider_intensity_type_later_widens_the_stack_and_keeps_every_value(tmp_path):
    small = np.full((2, 4, 4), 200, np.uint8)
    wide = np.full((3, 4, 4), 60000, np.uint16)
    signed = np.full((1, 4, 4), -5, np.int16)
    stack = build_project_stack(
        iter([("a", small, None, False), ("b", wide, None, False), ("c", signed, None, False)]),
        [2, 3, 1],
        tmp_path,
    )
    assert stack.image.dtype == np.int32  # holds uint16 and int16 alike
    np.testing.assert_array_equal(stack.volume("a"), small)
    np.testing.assert_array_equal(stack.volume("b"), wide)
    np.testing.assert_array_equal(stack.volume("c"), signed)
    assert sorted(p.name for p in tmp_path.glob("image*.npy")) == ["image_int32.npy"]


def test_project_selection_carries_the_image(tmp_path):
    first = Selection.from_scores([0.9, 0.2, 0.5], tau=0.6, annotated=[0])
    second = Selection.from_scores([0.1, 0.8], tau=0.6, confidence=[0.3, 0.7])
    selection = ProjectSelection({"a": first, "b": second})
    assert selection.accepted() == {"a": [], "b": [1]}
    assert selection.worst_first() == [("b", 0), ("a", 1), ("a", 2), ("b", 1)]
    csv_path = selection.save_csv(tmp_path / "scores.csv")
    assert csv_path.read_text().splitlines()[0].startswith("image,slice,score")
    for path in (csv_path, selection.save_json(tmp_path / "scores.json")):
        loaded = ProjectSelection.load(path)
        assert loaded.names == ("a", "b") and loaded.accepted() == selection.accepted()
        assert loaded["a"].annotated == {0}
    single = first.save_csv(tmp_path / "single.csv")  # a one-image run's file still loads
    assert ProjectSelection.load(single, tau=0.6).accepted() == {"": []}
