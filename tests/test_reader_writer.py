"""The npe2 reader and writers, called directly (no viewer): they return layer data tuples."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from scipy import ndimage
from skimage import data as skimage_data

from napari_distill._reader import napari_get_reader, read_labels_layer
from napari_distill._writer import write_image_layer, write_labels_layer
from napari_distill.core import io
from napari_distill.core.io import MICROMETER, ReadError, ReadWarning, kinds
from napari_distill.core.io import read as io_read


@pytest.fixture
def stack_path(tmp_path):
    path = tmp_path / "fish.tif"
    stack = np.arange(3 * 8 * 9, dtype=np.uint16).reshape(3, 8, 9)
    tifffile.imwrite(
        path, stack, imagej=True, resolution=(2.0, 2.0), metadata={"spacing": 3.0, "unit": "um"}
    )
    return path


def test_reader_returns_an_image_layer_with_the_voxel_size(stack_path):
    reader = napari_get_reader(str(stack_path))
    assert callable(reader)
    [(data, kwargs, layer_type)] = reader(str(stack_path))
    assert layer_type == "image"
    assert data.shape == (3, 8, 9)
    assert kwargs["name"] == "fish"
    assert kwargs["scale"] == (3.0, 0.5, 0.5)
    assert kwargs["rgb"] is False
    assert kwargs["metadata"] == {"path": str(stack_path), "unit": MICROMETER}


def test_reader_declines_what_it_cannot_read(tmp_path, stack_path):
    (tmp_path / "table.csv").write_text("a\n1\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "store.zarr").mkdir()
    for path in ("table.csv", "empty", "store.zarr", "missing.tif"):
        assert napari_get_reader(str(tmp_path / path)) is None
    assert napari_get_reader([]) is None
    assert napari_get_reader([str(stack_path), str(tmp_path / "table.csv")]) is None
    assert napari_get_reader([str(stack_path), str(tmp_path / "empty")]) is None


def test_reader_reads_a_folder_and_a_list_as_stacks(tmp_path):
    (tmp_path / "slices").mkdir()
    paths = []
    for index in (10, 2, 1):
        path = tmp_path / "slices" / f"smear_{index}.png"
        iio.imwrite(path, np.full((5, 6, 3), index, np.uint8))
        paths.append(str(path))
    [(data, kwargs, _)] = napari_get_reader(str(tmp_path / "slices"))(str(tmp_path / "slices"))
    assert kwargs["name"] == "slices" and kwargs["rgb"] is True
    assert [int(s[0, 0, 0]) for s in np.asarray(data)] == [1, 2, 10]
    [(data, kwargs, _)] = napari_get_reader(paths)(paths)  # "open as stack": order as given
    assert [int(s[0, 0, 0]) for s in np.asarray(data)] == [10, 2, 1]
    [(data, _, _)] = napari_get_reader(paths[:1])(paths[:1])
    assert data.shape == (5, 6, 3)


def test_reader_raises_clearly_for_a_claimed_file_it_cannot_read(tmp_path):
    (tmp_path / "broken.tif").write_bytes(b"II*\x00\xff\xff\xff\xff")
    reader = napari_get_reader(str(tmp_path / "broken.tif"))
    with pytest.raises(ReadError, match=r"broken\.tif"):
        reader(str(tmp_path / "broken.tif"))


def test_labels_layer_round_trip_keeps_ids_and_scale(tmp_path):
    labels = np.zeros((2, 6, 7), np.uint32)
    labels[0, 1:3, 2:4] = 70_000
    labels[1, 4, 5] = 3
    meta = {"scale": (2.0, 0.5, 0.5), "metadata": {"unit": MICROMETER}, "name": "organs"}
    target = tmp_path / "organs.tif"
    assert write_labels_layer(str(target), labels, meta) == [str(target)]
    assert write_labels_layer(str(target), labels, meta) == [str(target)]  # napari asked first
    [(data, kwargs, layer_type)] = napari_get_reader(str(target))(str(target))
    assert layer_type == "labels"  # our own labels files reopen as labels
    np.testing.assert_array_equal(data, labels)
    assert kwargs["scale"] == (2.0, 0.5, 0.5)
    assert kwargs["metadata"]["unit"] == MICROMETER
    data, kwargs, layer_type = read_labels_layer(target)
    assert layer_type == "labels" and data.dtype == np.uint32


def test_labels_writer_takes_the_unit_from_napari_units(tmp_path):
    meta = {"scale": (0.25, 0.25), "units": ("micrometer", "micrometer"), "metadata": {}}
    [path] = write_labels_layer(str(tmp_path / "l.tif"), np.ones((3, 3), np.uint8), meta)
    _, kwargs, _ = read_labels_layer(path)
    assert kwargs["metadata"]["unit"] == MICROMETER and kwargs["scale"] == (0.25, 0.25)


def test_probability_image_layer_round_trip(tmp_path):
    probabilities = np.random.default_rng(0).random((3, 2, 5, 6)).astype(np.float32)
    meta = {"scale": (1.0, 4.0, 1.0, 1.0), "metadata": {"class_ids": [0, 2, 5]}}
    [path] = write_image_layer(str(tmp_path / "p.tif"), probabilities, meta)
    [(data, kwargs, layer_type)] = napari_get_reader(path)(path)
    assert layer_type == "image"
    np.testing.assert_array_equal(np.asarray(data), probabilities)
    assert kwargs["scale"] == (1.0, 4.0, 1.0, 1.0)
    assert kwargs["metadata"]["class_ids"] == [0, 2, 5]


def test_plain_image_layer_is_written_as_it_is(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (2, 5, 6, 3)).astype(np.uint8)
    meta = {"scale": (3.0, 1.0, 1.0), "rgb": True, "metadata": {}}
    [path] = write_image_layer(str(tmp_path / "rgb.tif"), image, meta)
    [(data, kwargs, layer_type)] = napari_get_reader(path)(path)
    assert layer_type == "image" and kwargs["rgb"] is True
    np.testing.assert_array_equal(np.asarray(data), image)
    assert kwargs["scale"] == (3.0, 1.0, 1.0)


def test_writers_refuse_multiscale_layers(tmp_path):
    with pytest.raises(ValueError, match="multiscale"):
        write_labels_layer(str(tmp_path / "l.tif"), [np.zeros((4, 4), np.uint8)], {})


def test_reader_repairs_nan_pixels_and_warns(tmp_path):
    """napari shows a warning raised while reading as a notification: the user sees it."""
    stack = np.random.default_rng(2).normal(500.0, 20.0, (5, 8, 9)).astype(np.float32)
    stack[1, 0, :3] = np.nan
    path = tmp_path / "with_nan.tif"
    tifffile.imwrite(path, stack)
    with pytest.warns(ReadWarning, match=r"with_nan\.tif holds 3 NaN or infinite pixels"):
        [(data, _, layer_type)] = napari_get_reader(str(path))(str(path))
    assert layer_type == "image" and np.isfinite(np.asarray(data)).all()


# --------------------------------------------------- labels from other tools (issue 30)
# The rule (napari_distill.core.io.kinds): integer, flat where not 0, and 0 the commonest value
# or a name saying labels. Real-looking data both ways: labels must open as Labels layers, CT
# volumes and photographs as Image layers.
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


def test_napari_opens_an_ome_zarr_lazily_as_multiscale_layers(tmp_path):
    """Through napari's own ``open`` and npe2 (a headless ViewerModel, no Qt)."""
    import npe2
    from napari.components import ViewerModel

    npe2.PluginManager.instance().discover()  # as napari does when it starts
    volume = np.arange(3 * 20 * 18, dtype=np.uint16).reshape(3, 20, 18)
    path = io.write_ngff_image(tmp_path / "scan.ome.zarr", volume, (2.0, 0.5, 0.5), levels=2)
    io.write_labels(path, (volume % 7 == 0).astype(np.uint8))
    viewer = ViewerModel()
    viewer.open(str(path), plugin="napari-distill")
    image, labels = viewer.layers
    assert (image._type_string, labels._type_string) == ("image", "labels")
    assert image.multiscale and labels.multiscale
    assert [level.shape for level in image.data] == [(3, 20, 18), (3, 10, 9)]
    assert type(image.data[0]).__module__.startswith("dask")
    assert tuple(image.scale) == (2.0, 0.5, 0.5) == tuple(labels.scale)
