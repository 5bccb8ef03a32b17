"""Cell planes through the npe2 reader and writer (no viewer): the plane axis first in napari,
``(N, P, H, W)`` in files, every overlap kept, a cell in two planes refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_distill import _reader, _writer
from napari_distill.core.io import read_cell_planes, write_cell_planes


def overlapping_planes() -> np.ndarray:
    planes = np.zeros((2, 2, 12, 12), np.uint16)  # (N, P, H, W)
    planes[0, 0, 1:7, 1:7] = 1
    planes[0, 1, 4:10, 4:10] = 2  # overlaps cell 1
    planes[1, 0, 2:5, 2:5] = 1
    return planes


def test_a_planes_file_opens_plane_first_with_its_scale_and_saves_back(tmp_path):
    planes = overlapping_planes()
    path = write_cell_planes(tmp_path / "cells.tif", planes, scale=(0.5, 0.5), unit="micrometer")
    assert _reader.napari_get_reader(str(path)) is not None
    [(data, kwargs, kind)] = _reader.read_path(path)
    assert kind == "labels" and data.shape == (2, 2, 12, 12)
    np.testing.assert_array_equal(data, planes.swapaxes(0, 1))
    assert kwargs["axis_labels"] == ("plane", "field", "y", "x")
    assert kwargs["scale"] == (1.0, 1.0, 0.5, 0.5) and kwargs["metadata"]["cell_planes"] is True
    [written] = _writer.write_labels_layer(str(tmp_path / "back.tif"), data, kwargs)
    np.testing.assert_array_equal(read_cell_planes(written), planes)


def test_one_field_opens_as_planes_and_an_unmarked_4d_layer_is_taken_as_written(tmp_path):
    one = overlapping_planes()[0]
    path = write_cell_planes(tmp_path / "one.tif", one)
    [(data, kwargs, _)] = _reader.read_path(path)
    assert data.shape == (2, 12, 12) and kwargs["axis_labels"] == ("plane", "y", "x")
    [written] = _writer.write_labels_layer(str(tmp_path / "one_back.tif"), data, kwargs)
    np.testing.assert_array_equal(read_cell_planes(written)[0], one)

    planes = overlapping_planes()
    [written] = _writer.write_labels_layer(str(tmp_path / "plain.tif"), planes, {})
    np.testing.assert_array_equal(read_cell_planes(written), planes)


def test_a_cell_painted_in_two_planes_is_refused_and_nothing_is_written(tmp_path):
    planes = overlapping_planes()
    planes[0, 1, 0, 0] = 1  # cell 1 in both planes of field 0
    target = tmp_path / "bad.tif"
    with pytest.raises(ValueError, match="cell 1 lies in more than one plane"):
        _writer.write_labels_layer(str(target), planes, {})
    assert not target.exists()
