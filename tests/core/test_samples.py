"""The synthetic samples: shapes, determinism, label consistency, and the shipped files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_distill._sample_data import medaka_ct, pap_smear
from napari_distill.core.samples import (
    MEDAKA_CLASSES,
    PAP_CLASSES,
    make_medaka,
    make_pap_smear,
    reslice_medaka,
)

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
MAX_FILE_MB = 3.5
SMALL_VOLUME = (24, 64, 32)
SMALL_FIELD = (160, 160)


@pytest.fixture(scope="module")
def small_medaka():
    return make_medaka(SMALL_VOLUME, n_annotated=3, seed=0)


@pytest.fixture(scope="module")
def small_pap():
    return make_pap_smear(n_fields=3, field_shape=SMALL_FIELD, seed=0, n_annotated=1)


@pytest.fixture(scope="module")
def default_medaka():
    return make_medaka()


@pytest.fixture(scope="module")
def default_pap():
    return make_pap_smear()


# Medaka ---------------------------------------------------------------------------------------


def test_medaka_shapes_dtypes_and_scale(small_medaka):
    s = small_medaka
    assert s.image.shape == s.labels_full.shape == s.labels_sparse.shape == SMALL_VOLUME
    assert s.image.dtype == np.uint16
    assert s.labels_full.dtype == s.labels_sparse.dtype == np.uint8
    assert len(s.scale) == 3 and all(v > 0 for v in s.scale)
    assert s.class_names == MEDAKA_CLASSES
    assert set(np.unique(s.labels_full)) <= {0, *MEDAKA_CLASSES}


def test_medaka_scale_keeps_the_field_of_view():
    small, default = make_medaka(SMALL_VOLUME, n_annotated=1).scale, (40.0, 40.0, 40.0)
    ratios = [a / b for a, b in zip(small, default, strict=True)]
    assert ratios == pytest.approx([96 / 24, 256 / 64, 128 / 32])


def test_medaka_sparse_labels_are_full_labels_on_annotated_slices(small_medaka):
    s = small_medaka
    assert len(s.annotated) == 3 and np.all(np.diff(s.annotated) > 0)
    np.testing.assert_array_equal(s.labels_sparse[s.annotated], s.labels_full[s.annotated])
    others = np.setdiff1d(np.arange(SMALL_VOLUME[0]), s.annotated)
    assert not s.labels_sparse[others].any()


def test_medaka_annotated_slices_cut_through_the_fish(default_medaka):
    s = default_medaka
    fish_slices = np.flatnonzero(s.labels_full.reshape(s.labels_full.shape[0], -1).any(axis=1))
    for index in s.annotated:
        assert s.labels_sparse[index].any()
        assert len(np.unique(s.labels_sparse[index])) >= 3  # several organs, not a sliver
    # Spread over the fish, as a biologist paints a few slices through the whole volume.
    assert np.ptp(s.annotated) >= 0.4 * np.ptp(fish_slices)


def test_medaka_every_organ_is_present_at_the_default_size(default_medaka):
    s = default_medaka
    assert s.image.shape == (96, 256, 128)
    present = set(np.unique(s.labels_full).tolist())
    assert present == {0, *MEDAKA_CLASSES}


def test_medaka_intensities_look_like_ct(default_medaka):
    s = default_medaka
    voxels = {k: s.image[s.labels_full == k] for k in MEDAKA_CLASSES}
    peak = {k: np.percentile(v, 99) for k, v in voxels.items()}
    median = {k: np.median(v) for k, v in voxels.items()}
    medium = np.median(s.image[:, :4, :4])  # a corner: only the mounting medium
    assert peak[1] == max(peak.values())  # bone is brightest
    assert median[9] < medium  # the swim bladder holds gas
    assert median[3] > median[2]  # the lens is denser than the rest of the eye
    assert all(median[k] > medium for k in MEDAKA_CLASSES if k != 9)


def test_medaka_is_deterministic_per_seed_and_differs_across_seeds():
    a = make_medaka(SMALL_VOLUME, n_annotated=2, seed=7)
    b = make_medaka(SMALL_VOLUME, n_annotated=2, seed=7)
    c = make_medaka(SMALL_VOLUME, n_annotated=2, seed=8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels_full, b.labels_full)
    assert not np.array_equal(a.labels_full, c.labels_full)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (4, 64, 32)}, "shape"),
        ({"shape": (24, 64)}, "shape"),
        ({"n_annotated": -1}, "n_annotated"),
        ({"shape": SMALL_VOLUME, "n_annotated": 24}, "n_annotated"),
    ],
)
def test_medaka_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_medaka(**kwargs)


# Pap smear ------------------------------------------------------------------------------------


def test_pap_shapes_dtypes_and_scale(small_pap):
    s = small_pap
    n, (h, w) = 3, SMALL_FIELD
    assert s.image.shape == (n, h, w, 3) and s.image.dtype == np.uint8
    assert s.semantic_full.shape == s.labels_sparse.shape == (n, h, w)
    assert s.semantic_full.dtype == np.uint8
    assert s.nuclei.shape == (n, h, w) and s.nuclei.dtype == np.uint16
    assert s.cytoplasm_planes.ndim == 4 and s.cytoplasm_planes.shape[1:] == (n, h, w)
    assert s.cytoplasm_planes.dtype == np.uint16
    assert s.class_names == PAP_CLASSES
    assert len(s.scale) == 2 and all(v > 0 for v in s.scale)
    np.testing.assert_array_equal(s.annotated, [0])
    np.testing.assert_array_equal(s.labels_sparse[0], s.semantic_full[0])
    assert not s.labels_sparse[1:].any()


def test_pap_every_cell_is_in_exactly_one_plane_and_planes_overlap(small_pap):
    s = small_pap
    for field in range(s.image.shape[0]):
        planes = s.cytoplasm_planes[:, field]
        ids_per_plane = [set(np.unique(p).tolist()) - {0} for p in planes]
        all_ids = set().union(*ids_per_plane)
        assert sum(len(ids) for ids in ids_per_plane) == len(all_ids)
        assert all_ids == set(range(1, len(all_ids) + 1))  # cells numbered 1..n
    # Cells overlap: some pixels belong to cells in two planes.
    assert ((s.cytoplasm_planes > 0).sum(axis=0) >= 2).any()


def test_pap_nuclei_lie_in_their_own_cell(small_pap):
    s = small_pap
    for field, mapping in enumerate(s.cell_to_nucleus):
        cells = s.cytoplasm_planes[:, field].max(axis=0)  # any plane: ids are unique
        assert mapping, "every field has cells"
        for cell_id, nucleus_id in mapping.items():
            assert nucleus_id == cell_id
            nucleus = s.nuclei[field] == nucleus_id
            assert nucleus.any()
            cell = (s.cytoplasm_planes[:, field] == cell_id).any(axis=0)
            assert np.all(cell[nucleus]), f"nucleus {nucleus_id} leaves its cell"
        del cells


def test_pap_semantic_labels_agree_with_instances(small_pap):
    s = small_pap
    any_cell = (s.cytoplasm_planes > 0).any(axis=0)
    expected = np.where(s.nuclei > 0, 2, np.where(any_cell, 1, 0))
    np.testing.assert_array_equal(s.semantic_full, expected)
    free = (s.nuclei > 0) & ~any_cell
    assert free.any(), "some free nuclei without cytoplasm"


def test_pap_colours_look_like_a_pap_stain(default_pap):
    s = default_pap
    rgb = s.image.astype(np.float32)
    background = rgb[s.semantic_full == 0].mean(axis=0)
    cytoplasm = rgb[s.semantic_full == 1].mean(axis=0)
    nuclei = rgb[s.semantic_full == 2].mean(axis=0)
    assert background.min() > 200  # a pale, bright field
    assert nuclei.sum() < cytoplasm.sum() < background.sum()
    assert nuclei[2] > nuclei[0]  # haematoxylin: blue-purple


def test_pap_is_deterministic_per_seed_and_differs_across_seeds():
    a = make_pap_smear(2, SMALL_FIELD, seed=3)
    b = make_pap_smear(2, SMALL_FIELD, seed=3)
    c = make_pap_smear(2, SMALL_FIELD, seed=4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.cytoplasm_planes, b.cytoplasm_planes)
    assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_fields": 0}, "n_fields"),
        ({"field_shape": (32, 512)}, "field_shape"),
        ({"n_fields": 2, "n_annotated": 3}, "n_annotated"),
    ],
)
def test_pap_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_pap_smear(**kwargs)


# Shipped files and layers ---------------------------------------------------------------------


def _read(name: str) -> tuple[np.ndarray, tifffile.TiffFile]:
    path = SAMPLE_DIR / name
    assert path.stat().st_size < MAX_FILE_MB * 1e6, f"{name} is too large"
    with tifffile.TiffFile(path) as tif:
        return tif.asarray(), tif.imagej_metadata or {}


def test_shipped_medaka_files_equal_the_generator(default_medaka):
    s = default_medaka
    for name, expected in (
        ("medaka_ct.tif", s.image),
        ("medaka_labels_sparse.tif", s.labels_sparse),
        ("medaka_labels_full.tif", s.labels_full),
    ):
        data, metadata = _read(name)
        np.testing.assert_array_equal(data, expected, err_msg=f"regenerate {name}")
        assert metadata["spacing"] == pytest.approx(s.scale[0])
        assert metadata["unit"] == "um"


def test_shipped_pap_files_equal_the_generator(default_pap):
    s = default_pap
    planes = np.moveaxis(s.cytoplasm_planes, 0, 1)  # stored (field, plane, H, W)
    for name, expected in (
        ("pap_smear.tif", s.image),
        ("pap_smear_labels_sparse.tif", s.labels_sparse),
        ("pap_smear_labels_full.tif", s.semantic_full),
        ("pap_smear_nuclei.tif", s.nuclei),
        ("pap_smear_cytoplasm_planes.tif", planes),
    ):
        data, _ = _read(name)
        np.testing.assert_array_equal(data, expected, err_msg=f"regenerate {name}")


def test_sample_layers_have_matching_scales(default_medaka):
    layers = medaka_ct()
    assert [t for _, _, t in layers] == ["image", "labels", "labels"]
    image, full, sparse = layers  # the painted layer last: napari selects it
    np.testing.assert_array_equal(image[0], default_medaka.image)
    np.testing.assert_array_equal(sparse[0], default_medaka.labels_sparse)
    low, high = image[1]["contrast_limits"]
    assert image[0].min() <= low < high <= image[0].max()
    assert full[1]["visible"] is False
    pap = pap_smear()
    assert pap[0][1]["rgb"] is True
    for data, kwargs, _ in [*layers, *pap]:
        spatial = data.ndim - (1 if kwargs.get("rgb") else 0)
        assert len(kwargs["scale"]) == spatial
    names = [kwargs["name"] for _, kwargs, _ in pap]
    assert "pap cytoplasm truth 0" in names and names[-1] == "pap painted"


def test_reslice_medaka_keeps_every_nth_slice_along_the_axis():
    fish = make_medaka(shape=(16, 40, 24), n_annotated=0, seed=3)
    stack = reslice_medaka(fish, axis=1, every=4, n_annotated=2)
    assert stack.image.shape == (10, 16, 24)
    np.testing.assert_array_equal(stack.image[2], fish.image[:, 8, :])
    np.testing.assert_array_equal(stack.labels_full[2], fish.labels_full[:, 8, :])
    assert stack.scale == (fish.scale[1] * 4, fish.scale[0], fish.scale[2])
    assert len(stack.annotated) == 2
    painted = np.flatnonzero(stack.labels_sparse.reshape(10, -1).any(axis=1))
    assert set(painted.tolist()) <= set(stack.annotated.tolist())
    np.testing.assert_array_equal(
        stack.labels_sparse[stack.annotated], stack.labels_full[stack.annotated]
    )
    with pytest.raises(ValueError, match="fewer than"):
        reslice_medaka(fish, axis=0, every=4)
