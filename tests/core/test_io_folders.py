"""Folders of 3D volumes (issue 26) told apart from folders of 2D slices, read lazily."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_distill._reader import read_path
from napari_distill.core import io
from napari_distill.core.io import ReadError


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
