"""The npe2 reader and writers, called directly (no viewer): they return layer data tuples."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_distill._reader import napari_get_reader, read_labels_layer
from napari_distill._writer import write_image_layer, write_labels_layer
from napari_distill.core.io import MICROMETER, ReadError, ReadWarning


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
