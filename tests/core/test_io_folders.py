"""core.io on folders and lists: 2D slices stacked in natural order (lazily when large), 2D
images of every format, folders of 3D volumes told apart from folders of slices."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_distill._reader import read_path
from napari_distill.core import io
from napari_distill.core.io import ReadError
from napari_distill.core.io import read as io_read


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# --- folders and lists of slices ------------------------------------------------------------


def _write_slices(folder: Path, names: list[str], shape=(6, 7)) -> None:
    folder.mkdir(exist_ok=True)
    for name in names:
        value = int("".join(c for c in name if c.isdigit()))
        tifffile.imwrite(folder / name, np.full(shape, value, np.uint8))


def test_folder_of_slices_is_stacked_in_natural_order(tmp_path):
    _write_slices(tmp_path / "stack", ["slice_10.tif", "slice_2.tif", "slice_1.tif"])
    (tmp_path / "stack" / "._slice_3.tif").write_bytes(b"macOS resource fork")
    (tmp_path / "stack" / "notes.txt").write_text("not an image")
    assert io.can_read(tmp_path / "stack")
    read = io.read_image(tmp_path / "stack")
    assert read.data.shape == (3, 6, 7)
    assert [int(s[0, 0]) for s in read.data] == [1, 2, 10]
    assert read.scale == (1.0, 1.0, 1.0)
    assert read.path == tmp_path / "stack"


def test_folder_of_slices_above_the_threshold_reads_lazily(tmp_path, monkeypatch):
    _write_slices(tmp_path / "stack", [f"s{i}.tif" for i in range(1, 6)])
    monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)
    read = io.read_image(tmp_path / "stack")
    assert isinstance(read.data, da.Array)
    assert [int(s[0, 0]) for s in read.data.compute()] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("lazy", [False, True])
def test_slices_of_another_shape_or_type_are_named(tmp_path, monkeypatch, lazy):
    if lazy:
        monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)
    _write_slices(tmp_path / "a", ["s1.tif", "s2.tif"])
    _write_slices(tmp_path / "a", ["s3.tif"], shape=(6, 8))
    with pytest.raises(ReadError, match=r"s3\.tif.*same shape"):
        io.read_image(tmp_path / "a")
    _write_slices(tmp_path / "b", ["s1.tif", "s2.tif"])
    tifffile.imwrite(tmp_path / "b" / "s10.tif", np.zeros((6, 7), np.uint16))
    with pytest.raises(ReadError, match=r"s10\.tif.*uint16"):
        io.read_image(tmp_path / "b")
    _write_slices(tmp_path / "c", ["s1.tif"])
    _write_slices(tmp_path / "c", ["s2.tif"], shape=(2, 6, 7))
    # a 3D file among 2D slices: the folder is neither one stack nor volumes
    with pytest.raises(ReadError, match=r"mixes 3D volumes \(s2\.tif.*2D images \(s1\.tif"):
        io.read_image(tmp_path / "c")


def test_folder_mixing_formats_is_refused(tmp_path):
    _write_slices(tmp_path / "m", ["s1.tif"])
    iio.imwrite(tmp_path / "m" / "s2.png", np.zeros((6, 7), np.uint8))
    with pytest.raises(ReadError, match="mixes"):
        io.read_image(tmp_path / "m")


def test_list_of_files_is_stacked_in_the_given_order(tmp_path):
    _write_slices(tmp_path, ["a3.tif", "a1.tif"])
    read = io.read_image_stack([tmp_path / "a3.tif", tmp_path / "a1.tif"])
    assert [int(s[0, 0]) for s in read.data] == [3, 1]


# --- 2D images for Pap smears ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".jpeg", ".bmp"])
def test_plain_rgb_images_are_read(tmp_path, rng, suffix):
    image = rng.integers(0, 255, size=(16, 20, 3)).astype(np.uint8)
    path = tmp_path / f"smear{suffix}"
    iio.imwrite(path, image)
    assert io.can_read(path)
    read = io.read_image(path)
    assert read.rgb and read.data.shape == (16, 20, 3) and read.scale == (1.0, 1.0)
    if suffix in (".png", ".bmp"):  # lossless
        np.testing.assert_array_equal(read.data, image)


def test_plain_grey_and_grey_alpha_images_are_2d(tmp_path, rng):
    grey = rng.integers(0, 60_000, size=(8, 9)).astype(np.uint16)
    iio.imwrite(tmp_path / "g.png", grey)
    read = io.read_image(tmp_path / "g.png")
    assert not read.rgb
    np.testing.assert_array_equal(read.data, grey)
    grey_alpha = rng.integers(0, 255, size=(8, 9, 2)).astype(np.uint8)
    iio.imwrite(tmp_path / "la.png", grey_alpha)
    np.testing.assert_array_equal(io.read_image(tmp_path / "la.png").data, grey_alpha[..., 0])


def test_folder_of_png_slices(tmp_path, rng, monkeypatch):
    (tmp_path / "p").mkdir()
    for index in (1, 2, 10):
        iio.imwrite(tmp_path / "p" / f"s{index}.png", np.full((5, 6, 3), index, np.uint8))
    for threshold in (io.LAZY_THRESHOLD_BYTES, 10):
        monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", threshold)
        read = io.read_image(tmp_path / "p")
        assert read.rgb and read.data.shape == (3, 5, 6, 3)
        assert [int(s[0, 0, 0]) for s in np.asarray(read.data)] == [1, 2, 10]


def _volumes(folder, names, shape=(7, 6, 5), **kwargs):
    folder.mkdir(exist_ok=True)
    for number, name in enumerate(names):
        tifffile.imwrite(folder / name, np.full(shape, number, np.uint16), **kwargs)


def test_a_folder_of_volumes_is_not_a_stack(tmp_path):
    _volumes(tmp_path / "v", ["fish_2.tif", "fish_10.tif", "fish_1.tif"])
    assert [p.name for p in io.volumes_in(tmp_path / "v")] == [
        "fish_1.tif", "fish_2.tif", "fish_10.tif"
    ]  # fmt: skip
    with pytest.raises(ReadError, match="holds 3 3D volumes, not the 2D slices of one stack"):
        io.read_image(tmp_path / "v")
    _volumes(tmp_path / "s", ["s1.tif", "s2.tif"], shape=(6, 5))
    assert io.volumes_in(tmp_path / "s") is None  # 2D slices: one stack, as before
    assert io.read_image(tmp_path / "s").data.shape == (2, 6, 5)
    assert io.volumes_in(tmp_path / "s" / "s1.tif") is None


def test_volumes_read_lazily_and_labels_by_name(tmp_path):
    _volumes(tmp_path, ["a.tif"])
    _volumes(tmp_path, ["b.tif"], compression="zlib")
    tifffile.imwrite(tmp_path / "a_labels.tif", np.ones((7, 6, 5), np.uint8))
    plain, packed = io.read_volume(tmp_path / "a.tif"), io.read_volume(tmp_path / "b.tif")
    assert isinstance(plain.data, np.memmap) and isinstance(packed.data, da.Array)
    assert io.is_labels_name(tmp_path / "a_labels.tif") and not io.is_labels_name(tmp_path / "a")
    layers = read_path(tmp_path)
    assert [(kwargs["name"], kind) for _data, kwargs, kind in layers] == [
        ("a", "image"), ("a_labels", "labels"), ("b", "image")
    ]  # fmt: skip
    with pytest.raises(ReadError, match="not a 3D stack"):
        tifffile.imwrite(tmp_path / "flat.tif", np.zeros((6, 5), np.uint16))
        io.read_volume(tmp_path / "flat.tif")
