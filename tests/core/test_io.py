"""core.io: reading stacks, slices and 2D images with their voxel size; writing TIFF safely."""

from __future__ import annotations

import errno
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_distill.core import io
from napari_distill.core.io import ReadError
from napari_distill.core.io import read as io_read
from napari_distill.core.io import tiff as io_tiff
from napari_distill.core.io import write as io_write


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _stack(rng: np.random.Generator, shape=(5, 12, 16), dtype=np.uint16) -> np.ndarray:
    return rng.integers(0, 200, size=shape).astype(dtype)


# --- writing and reading back -------------------------------------------------------------


@pytest.mark.parametrize(
    ("largest", "dtype"), [(200, np.uint8), (300, np.uint16), (70_000, np.uint32)]
)
@pytest.mark.parametrize("shape", [(9, 11), (3, 9, 11)])
def test_labels_round_trip_picks_a_dtype_that_holds_every_label(
    tmp_path, rng, largest, dtype, shape
):
    labels = rng.integers(0, largest, size=shape, dtype=np.int64)
    labels.flat[0] = largest
    scale = (2.5, 0.5, 0.25)[-len(shape) :]
    path = io.write_labels(tmp_path / "labels.tif", labels, scale, unit=io.MICROMETER)
    read = io.read_labels(path)
    assert read.data.dtype == dtype
    np.testing.assert_array_equal(read.data, labels)
    assert read.scale == scale
    assert read.unit == io.MICROMETER
    assert read.data.flags.writeable  # napari paints into it
    assert io.file_kind(path) == "labels"


def test_labels_without_scale_read_back_as_unit_free_ones(tmp_path, rng):
    labels = _stack(rng, (2, 5, 6), np.uint8)
    read = io.read_labels(io.write_labels(tmp_path / "l.tiff", labels))
    assert read.scale == (1.0, 1.0, 1.0)
    assert read.unit is None


def test_dask_labels_are_written_slice_by_slice(tmp_path, rng):
    labels = rng.integers(0, 70_000, size=(5, 8, 9)).astype(np.uint32)
    lazy = da.from_array(labels, chunks=(1, 8, 9))
    read = io.read_labels(io.write_labels(tmp_path / "l.tif", lazy, (1.0, 2.0, 3.0)))
    np.testing.assert_array_equal(read.data, labels)
    assert read.scale == (1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0, -1]]), "negative"),
        (np.array([[0, 2**33]]), "uint32"),
        (np.array([[0.0, 1.0]]), "integers"),
        (np.zeros((2, 2, 2, 2), np.uint8), "2D or 3D"),
    ],
)
def test_write_labels_rejects_what_cannot_round_trip(tmp_path, labels, message):
    with pytest.raises(ValueError, match=message):
        io.write_labels(tmp_path / "l.tif", labels)
    assert not list(tmp_path.iterdir())


def test_write_labels_checks_scale_and_suffix(tmp_path):
    labels = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="2 positive numbers"):
        io.write_labels(tmp_path / "l.tif", labels, (1.0, 0.0))
    with pytest.raises(ValueError, match=r"\.tif"):
        io.write_labels(tmp_path / "l.png", labels)


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    path = io.write_labels(tmp_path / "l.tif", np.ones((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        io.write_labels(path, np.full((4, 4), 2, np.uint8))
    np.testing.assert_array_equal(io.read_labels(path).data, 1)
    io.write_labels(path, np.full((4, 4), 2, np.uint8), overwrite=True)
    np.testing.assert_array_equal(io.read_labels(path).data, 2)


def test_a_failed_write_leaves_neither_half_a_file_nor_a_temporary(tmp_path, monkeypatch):
    path = io.write_labels(tmp_path / "l.tif", np.ones((4, 4), np.uint8))

    def disk_full(file, *args, **kwargs):
        Path(file).write_bytes(b"II*\x00 half a tiff")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_write.tifffile, "imwrite", disk_full)
    with pytest.raises(OSError, match="No space"):
        io.write_labels(path, np.full((4, 4), 2, np.uint8), overwrite=True)
    with pytest.raises(OSError, match="No space"):
        io.write_labels(tmp_path / "new.tif", np.ones((4, 4), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l.tif"]
    monkeypatch.undo()
    np.testing.assert_array_equal(io.read_labels(path).data, 1)  # the old file is intact


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_probabilities_round_trip_with_class_ids(tmp_path, rng, dtype):
    probabilities = rng.random((3, 2, 6, 7)).astype(dtype)
    path = io.write_probabilities(
        tmp_path / "p.tif", probabilities, (3.0, 1.0, 1.0), class_ids=(0, 4, 9)
    )
    read = io.read_probabilities(path)
    assert read.data.dtype == (np.float16 if dtype == np.float16 else np.float32)
    np.testing.assert_allclose(np.asarray(read.data), probabilities, rtol=1e-3)
    assert read.class_ids == (0, 4, 9)
    assert read.scale == (3.0, 1.0, 1.0)
    assert io.file_kind(path) == "probabilities"
    with pytest.raises(ReadError, match="4D"):  # not an image stack
        io.read_image(path)


def test_write_probabilities_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="each of the 2 channels"):
        io.write_probabilities(tmp_path / "p.tif", np.zeros((2, 4, 4)), class_ids=(0, 1, 2))
    with pytest.raises(ValueError, match="floating point"):
        io.write_probabilities(tmp_path / "p.tif", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ReadError, match="not a probability map"):
        io.read_probabilities(io.write_labels(tmp_path / "l.tif", np.zeros((4, 4), np.uint8)))


@pytest.mark.parametrize("shape", [(10, 12, 3), (2, 10, 12, 3), (10, 12, 4)])
def test_rgb_image_round_trip(tmp_path, rng, shape):
    image = rng.integers(0, 255, size=shape).astype(np.uint8)
    scale = (2.0, 0.5, 0.5)[-(len(shape) - 1) :]
    path = io.write_image(tmp_path / "rgb.tif", image, scale, rgb=True)
    read = io.read_image(path)
    assert read.rgb
    assert read.scale == scale
    np.testing.assert_array_equal(np.asarray(read.data), image)


# --- voxel size from other software's metadata ----------------------------------------------


@pytest.mark.parametrize(
    ("unit", "factor"), [("um", 1.0), ("micron", 1.0), ("\\u00B5m", 1.0), ("mm", 1000.0)]
)
def test_imagej_spacing_and_resolution_become_the_scale(tmp_path, rng, unit, factor):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(
        path,
        _stack(rng),
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"spacing": 2.0, "unit": unit, "axes": "ZYX"},
    )
    read = io.read_image(path)
    assert read.scale == pytest.approx((2.0 * factor, 0.25 * factor, 0.5 * factor))
    assert read.unit == io.MICROMETER


def test_ome_physical_sizes_become_the_scale(tmp_path, rng):
    path = tmp_path / "stack.ome.tif"
    metadata = {
        "axes": "ZYX",
        "PhysicalSizeX": 0.25,
        "PhysicalSizeY": 0.5,
        "PhysicalSizeZ": 3000.0,
        "PhysicalSizeZUnit": "nm",
    }
    tifffile.imwrite(path, _stack(rng), ome=True, metadata=metadata)
    read = io.read_image(path)
    assert read.scale == pytest.approx((3.0, 0.5, 0.25))
    assert read.unit == io.MICROMETER


@pytest.mark.parametrize(
    ("unit", "pixels_per_unit", "expected", "expected_unit"),
    [
        ("CENTIMETER", 40_000.0, 0.25, io.MICROMETER),
        ("INCH", 25_400.0, 1.0, io.MICROMETER),
        ("NONE", 4.0, 0.25, None),
    ],
)
def test_resolution_tags_become_the_scale(
    tmp_path, rng, unit, pixels_per_unit, expected, expected_unit
):
    path = tmp_path / "tags.tif"
    tifffile.imwrite(
        path,
        _stack(rng, (10, 12)),
        resolution=(pixels_per_unit, pixels_per_unit),
        resolutionunit=unit,
        metadata=None,
    )
    read = io.read_image(path)
    assert read.scale == pytest.approx((expected, expected))
    assert read.unit == expected_unit


def test_unknown_voxel_size_is_one(tmp_path, rng):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _stack(rng), metadata=None, photometric="minisblack")
    read = io.read_image(path)
    assert read.scale == (1.0, 1.0, 1.0)
    assert read.unit is None


# --- lazy reading ---------------------------------------------------------------------------


def test_uncompressed_stack_is_memory_mapped(tmp_path, rng):
    stack = _stack(rng)
    tifffile.imwrite(tmp_path / "s.tif", stack)
    read = io.read_image(tmp_path / "s.tif")
    assert isinstance(read.data, np.memmap)
    np.testing.assert_array_equal(read.data, stack)


def test_compressed_stack_above_the_threshold_is_a_dask_array(tmp_path, rng, monkeypatch):
    stack = _stack(rng)
    tifffile.imwrite(tmp_path / "z.tif", stack, compression="zlib")
    assert isinstance(io.read_image(tmp_path / "z.tif").data, np.ndarray)
    monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)
    read = io.read_image(tmp_path / "z.tif")
    assert isinstance(read.data, da.Array)
    np.testing.assert_array_equal(read.data.compute(), stack)


def test_lazy_reading_without_zarr_reads_page_by_page(tmp_path, rng, monkeypatch):
    stack = _stack(rng)
    tifffile.imwrite(tmp_path / "z.tif", stack, compression="zlib")
    monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)
    monkeypatch.setattr(io_tiff, "_zarr_usable", lambda: False)
    read = io.read_image(tmp_path / "z.tif")
    assert isinstance(read.data, da.Array)
    np.testing.assert_array_equal(read.data.compute(), stack)


def test_big_endian_and_planar_rgb_are_read_as_native_colour_last(tmp_path, rng):
    stack = _stack(rng)
    tifffile.imwrite(tmp_path / "be.tif", stack, byteorder=">")
    read = io.read_image(tmp_path / "be.tif")
    assert read.data.dtype.isnative
    np.testing.assert_array_equal(read.data, stack)
    planar = rng.integers(0, 255, size=(3, 10, 12)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", planar, photometric="rgb", planarconfig="separate")
    read = io.read_image(tmp_path / "planar.tif")
    assert read.rgb
    np.testing.assert_array_equal(read.data, np.moveaxis(planar, 0, -1))


# --- what is declined and what fails clearly -------------------------------------------------


def test_can_read_declines_what_it_does_not_own(tmp_path):
    (tmp_path / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "store.zarr").mkdir()
    tifffile.imwrite(tmp_path / "store.zarr" / "0.tif", np.zeros((4, 4), np.uint8))
    assert not io.can_read(tmp_path / "table.csv")
    assert not io.can_read(tmp_path / "empty")
    assert not io.can_read(tmp_path / "store.zarr")
    assert not io.can_read(tmp_path / "missing.tif")


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_tiff_raises_naming_the_file(tmp_path, rng, compression, keep):
    full = tmp_path / "full.tif"
    tifffile.imwrite(full, _stack(rng, (6, 32, 32)), compression=compression)
    content = full.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(ReadError, match=r"cut\.tif"):
        np.asarray(io.read_image(cut).data)


def test_non_tiff_content_raises_naming_the_file(tmp_path):
    (tmp_path / "fake.tif").write_text("this is not a TIFF")
    with pytest.raises(ReadError, match=r"fake\.tif is not a readable TIFF"):
        io.read_image(tmp_path / "fake.tif")
    (tmp_path / "fake.png").write_text("nor a PNG")
    with pytest.raises(ReadError, match=r"fake\.png"):
        io.read_image(tmp_path / "fake.png")


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((2, 5, 8, 8), {"metadata": {"axes": "TZYX"}, "photometric": "minisblack"}),
        ((2, 3, 2, 8, 8), {"imagej": True, "metadata": {"axes": "TZCYX"}}),
    ],
)
def test_4d_and_5d_tiffs_are_refused(tmp_path, shape, kwargs):
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), **kwargs)
    with pytest.raises(ReadError, match=rf"hyper\.tif holds a {len(shape)}D image"):
        io.read_image(path)


def test_read_labels_refuses_rgb_and_float_and_accepts_masks(tmp_path, rng):
    io.write_image(tmp_path / "rgb.tif", np.zeros((4, 4, 3), np.uint8), rgb=True)
    with pytest.raises(ReadError, match="RGB"):
        io.read_labels(tmp_path / "rgb.tif")
    tifffile.imwrite(tmp_path / "f.tif", rng.random((4, 4)).astype(np.float32))
    with pytest.raises(ReadError, match="integers"):
        io.read_labels(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "mask.tif", np.eye(4, dtype=bool))
    mask = io.read_labels(tmp_path / "mask.tif")
    assert mask.data.dtype == np.uint8
    np.testing.assert_array_equal(mask.data, np.eye(4))


def test_missing_path_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        io.read_image(tmp_path / "missing.tif")


def test_natural_sort_key():
    names = ["s10.tif", "S2.tif", "s1.tif", "s2b.tif", "a.tif"]
    ordered = sorted((Path(n) for n in names), key=io.natural_sort_key)
    assert [p.name for p in ordered] == ["a.tif", "s1.tif", "S2.tif", "s2b.tif", "s10.tif"]
