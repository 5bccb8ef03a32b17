"""``predict`` from and to OME-Zarr: the labels of a zarr image equal those of the same TIFF;
labels go into the image's container, or a new one (``--out-format zarr`` for a TIFF batch).

A tiny 2.5D teacher (one network, one context slice each side) is trained a few steps once.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.batch import list_volumes, output_paths, read_header
from napari_distill.core.io import (
    MICROMETER,
    ngff_labels,
    read_any,
    read_image,
    read_labels,
    write_ngff_image,
)
from synthetic import fixed_disk_square_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCALE = (2.0, 0.5, 0.5)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """fish.tif and fish.ome.zarr (the same 9 slices, 2 levels), and teacher.pt."""
    folder = tmp_path_factory.mktemp("zarr")
    image, truth = fixed_disk_square_volume(n=9, size=32, seed=3)
    tifffile.imwrite(
        folder / "fish.tif",
        image,
        imagej=True,
        resolution=(1 / SCALE[1], 1 / SCALE[2]),
        metadata={"spacing": SCALE[0], "unit": "um"},
    )
    write_ngff_image(folder / "fish.ome.zarr", image, SCALE, unit=MICROMETER, levels=2)
    sparse = np.zeros_like(truth)
    sparse[[0, 4, 8]] = truth[[0, 4, 8]]
    tifffile.imwrite(folder / "sparse.tif", sparse)
    train = ["train-teacher", "--image", str(folder / "fish.tif"), "--labels"]
    train += [str(folder / "sparse.tif"), "--out", str(folder / "teacher.pt"), "--steps", "15"]
    train += ["--base-channels", "4", "--depth", "2", "--patch-size", "32", "--context-slices"]
    train += ["1", "--no-views", "--no-plan", "--no-deep-supervision", "--device", "cpu"]
    assert main([*train, "--quiet"]) == 0
    return folder


@pytest.fixture(scope="module")
def tiff_labels(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiff") / "fish_labels.tif"
    assert main(predict(files, files / "fish.tif", "--out", out)) == 0
    labels = read_labels(out).data
    assert len(np.unique(labels)) > 1  # not one class everywhere
    return labels


def predict(files, image, *extra):
    argv = ["predict", "--model", str(files / "teacher.pt"), "--image", str(image)]
    return [*argv, *map(str, extra), "--device", "cpu", "--quiet"]


def test_predict_on_the_zarr_writes_into_its_container_what_the_tiff_gives(
    files, tiff_labels, tmp_path
):
    container = tmp_path / "fish.ome.zarr"
    write_ngff_image(container, read_image(files / "fish.tif").data, SCALE, unit=MICROMETER)
    assert main(predict(files, container, "--out", container)) == 0
    [group] = ngff_labels(container)
    kind, labels = read_any(group)
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(labels.data), tiff_labels)
    assert labels.scale == pytest.approx(SCALE)
    assert main(predict(files, container, "--out", container)) != 0  # never replaced unasked
    assert main(predict(files, container, "--out", container, "--overwrite")) == 0


def test_a_tiff_gives_a_new_zarr_container_and_formats_must_agree(files, tiff_labels, tmp_path):
    out = tmp_path / "labels.zarr"
    assert main(predict(files, files / "fish.tif", "--out", out, "--out-format", "zarr")) == 0
    kind, labels = read_any(out)
    assert kind == "labels" and labels.scale == pytest.approx(SCALE)
    np.testing.assert_array_equal(np.asarray(labels.data), tiff_labels)
    bad = predict(files, files / "fish.tif", "--out", tmp_path / "x.tif", "--out-format", "zarr")
    assert main(bad) != 0


def test_a_batch_reads_zarr_chunk_by_chunk_and_writes_zarr(files, tiff_labels, tmp_path):
    """One worker process; the zarr volume cut into chunks of 4 slices with their halo, the
    TIFF volume written as OME-Zarr by --out-format zarr."""
    folder = tmp_path / "vols"
    folder.mkdir()
    (folder / "a.ome.zarr").symlink_to(files / "fish.ome.zarr", target_is_directory=True)
    (folder / "b.tif").symlink_to(files / "fish.tif")
    volumes = list_volumes(str(folder))
    assert [v.name for v in volumes] == ["a.ome.zarr", "b.tif"]
    assert read_header(volumes[0]).shape == (9, 32, 32)
    assert [p.name for p in output_paths(volumes, tmp_path, ".ome.zarr")] == [
        "a_labels.ome.zarr", "b_labels.ome.zarr",
    ]  # fmt: skip
    out = tmp_path / "out"
    argv = predict(files, folder, "--out-dir", out, "--out-format", "zarr", "--workers", "1")
    assert main([*argv, "--chunk-slices", "4"]) == 0
    for name in ("a", "b"):
        kind, labels = read_any(out / f"{name}_labels.ome.zarr")
        assert kind == "labels" and labels.scale == pytest.approx(SCALE)
        np.testing.assert_array_equal(np.asarray(labels.data), tiff_labels)
