"""The npe2 reader tells labels from images in files napari-distill did not write (issue 30).

The rule (``napari_distill.core.io.kinds``): integer, flat where not 0, and 0 the commonest
value or a name saying labels. Real-looking data both ways: labels must open as Labels
layers, CT volumes and photographs as Image layers.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage import data as skimage_data

from napari_distill._reader import napari_get_reader
from napari_distill.core import io
from napari_distill.core.io import kinds
from napari_distill.core.io import read as io_read

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"


def layer_type(path: Path | list[Path]) -> str:
    target = [str(p) for p in path] if isinstance(path, list) else str(path)
    [(_, _, kind)] = napari_get_reader(target)(target)
    return kind


def blobs(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Instance labels: ``n`` round objects with ids 1..n on a background of 0."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    labels = np.zeros(shape, np.uint16)
    for index in range(1, n + 1):
        centre = rng.uniform(0, shape).reshape((-1,) + (1,) * len(shape))
        radius = rng.uniform(3, 8)
        labels[((grid - centre) ** 2).sum(axis=0) < radius**2] = index
    return labels


def ct_volume(seed: int = 0) -> np.ndarray:
    """A uint16 CT-like volume: a noisy specimen in a cylinder of reconstruction, 0 outside
    it (more than a fifth of each slice: 0 is its commonest value)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices((20, 64, 64))
    inside = (y - 31.5) ** 2 + (x - 31.5) ** 2 < 32**2
    specimen = ((y - 30) ** 2 + (x - 34) ** 2 < 18**2) * 900.0 + 12 * np.sin(z / 3.0)
    volume = rng.normal(1000.0 + specimen, 40.0)
    return np.where(inside, np.clip(volume, 1, 65535), 0).astype(np.uint16)


def fluorescence(seed: int = 0) -> np.ndarray:
    """A dim 8-bit fluorescence field: blurred cells, photon noise, mostly black (0)."""
    rng = np.random.default_rng(seed)
    cells = (blobs((128, 128), 12, seed) > 0).astype(float)
    signal = ndimage.gaussian_filter(cells, 2) * 12.0
    return np.clip(rng.poisson(signal), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "name", ["medaka_labels_sparse.tif", "medaka_labels_full.tif", "pap_smear_nuclei.tif"]
)
def test_the_bundled_labels_open_as_labels(name):
    """ImageJ TIFFs written as Fiji writes them, without napari-distill's metadata."""
    assert io.file_kind(SAMPLE_DATA / name) == "image"  # no metadata of ours
    [(data, kwargs, kind)] = napari_get_reader(str(SAMPLE_DATA / name))(str(SAMPLE_DATA / name))
    assert kind == "labels"
    assert kwargs["name"] == name.removesuffix(".tif")
    np.testing.assert_array_equal(data, tifffile.imread(SAMPLE_DATA / name))
    assert data.flags.writeable  # ready to paint


def test_a_labels_stack_from_a_script_with_a_name_that_says_nothing(tmp_path):
    path = tmp_path / "stack_0042.tif"
    tifffile.imwrite(path, blobs((12, 96, 80), 40, seed=1))  # plain tifffile: no metadata
    assert layer_type(path) == "labels"


def test_a_mask_named_so_opens_as_labels_even_when_mostly_foreground(tmp_path):
    tissue = np.ones((64, 64), np.uint8)  # a tissue mask: 1 covers most of the field
    tissue[:10] = 0
    tifffile.imwrite(tmp_path / "embryo_mask.tif", tissue)
    tifffile.imwrite(tmp_path / "embryo.tif", tissue)
    assert layer_type(tmp_path / "embryo_mask.tif") == "labels"
    assert layer_type(tmp_path / "embryo.tif") == "image"  # 1/0 alone could be a picture


def test_binary_png_masks_and_a_folder_named_masks(tmp_path):
    (tmp_path / "masks").mkdir()
    for index in range(3):
        mask = (blobs((40, 50), 4, seed=index) > 0).astype(np.uint8) * 255
        iio.imwrite(tmp_path / "masks" / f"slice_{index}.png", mask)
    assert layer_type(tmp_path / "masks") == "labels"
    assert layer_type(tmp_path / "masks" / "slice_0.png") == "labels"
    files = sorted((tmp_path / "masks").iterdir())
    assert layer_type(files) == "labels"  # "open as stack"


def test_a_lazily_read_labels_stack_opens_as_labels(tmp_path, monkeypatch):
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, blobs((10, 64, 64), 30, seed=3), compression="zlib")
    monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)  # read as dask
    assert layer_type(path) == "labels"


# ------------------------------------------------------------------------- images
def test_the_bundled_ct_and_smear_open_as_images():
    assert layer_type(SAMPLE_DATA / "medaka_ct.tif") == "image"
    assert layer_type(SAMPLE_DATA / "pap_smear.tif") == "image"  # RGB


def test_a_ct_volume_stays_an_image_even_with_zeros_outside_its_field_of_view(tmp_path):
    volume = ct_volume()
    assert (volume == 0).mean() > 0.2  # 0 is the commonest value ...
    tifffile.imwrite(tmp_path / "scan.tif", volume)
    assert layer_type(tmp_path / "scan.tif") == "image"  # ... but it is not flat
    tifffile.imwrite(tmp_path / "scan_for_segmentation.tif", volume)
    assert layer_type(tmp_path / "scan_for_segmentation.tif") == "image"  # a name is not enough


@pytest.mark.parametrize("suffix", [".tif", ".png"])
def test_photographs_and_fluorescence_stay_images(tmp_path, suffix):
    camera = skimage_data.camera()  # an 8-bit photograph
    iio.imwrite(tmp_path / f"camera{suffix}", camera)
    assert layer_type(tmp_path / f"camera{suffix}") == "image"
    cells = fluorescence()
    assert np.bincount(cells.ravel()).argmax() == 0  # mostly black, few grey values
    iio.imwrite(tmp_path / f"cells{suffix}", cells)
    assert layer_type(tmp_path / f"cells{suffix}") == "image"


def test_an_image_napari_distill_wrote_stays_an_image(tmp_path):
    labels_like = blobs((6, 32, 32), 5, seed=4).astype(np.uint8)
    path = io.write_image(tmp_path / "image.tif", labels_like)  # says "image" in its metadata
    assert layer_type(path) == "image"


# ------------------------------------------------------------------------- the rule itself
def test_the_label_words_in_a_name():
    says = kinds.name_says_labels
    assert says(Path("embryo_mask.tif")) and says(Path("nuclei-labels.tiff"))
    assert says(Path("CellSeg_v2.tif")) and says(Path("GT.png"))
    assert not says(Path("masked_ct.tif")) and not says(Path("segment7.tif"))
    assert not says(Path("stack_0042.tif"))


class _CountingStack:
    """A (Z, Y, X) stack that records which slices are read (like a lazy array would)."""

    def __init__(self, shape: tuple[int, int, int]):
        self.shape, self.dtype, self.read = shape, np.dtype(np.uint16), []

    def __getitem__(self, index: int) -> np.ndarray:
        self.read.append(index)
        return np.zeros(self.shape[1:], self.dtype)


def test_the_decision_reads_a_bounded_sample_of_a_huge_stack():
    stack = _CountingStack((5_000, 2_048, 2_048))  # 40 GB if it were read whole
    rows = kinds.sample_rows(stack, 3)
    assert len(stack.read) == kinds.SAMPLE_SLICES
    assert stack.read[0] == 0 and stack.read[-1] == 4_999  # spread over the whole stack
    assert rows.size <= kinds.SAMPLE_VOXELS
