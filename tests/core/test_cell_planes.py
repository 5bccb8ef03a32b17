"""Cell planes: packing overlapping masks, and TIFF files that keep every overlap."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_distill.core.io import ReadError
from napari_distill.core.io.cells import (
    annotated_fields,
    check_planes,
    pack_planes,
    read_cell_planes,
    repack_planes,
    unpack_planes,
    write_cell_planes,
)


def _disk(shape, centre, radius):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _cells(shape=(40, 40)):
    """Three mutually overlapping disks and one apart: needs three planes."""
    return [
        _disk(shape, (15, 15), 7),
        _disk(shape, (15, 22), 7),
        _disk(shape, (20, 18), 7),
        _disk(shape, (34, 34), 4),
    ]


def test_packing_never_puts_overlapping_cells_in_one_plane():
    rng = np.random.default_rng(0)
    masks = [_disk((60, 60), rng.uniform(0, 60, 2), rng.uniform(3, 12)) for _ in range(25)]
    planes = pack_planes(masks)
    cells = unpack_planes(planes)
    assert len(cells) == 25
    for index, mask in enumerate(masks, start=1):
        np.testing.assert_array_equal(cells[index], mask)  # every cell whole
    plane_of = {i: int(np.flatnonzero([(p == i).any() for p in planes])[0]) for i in cells}
    for a in cells:
        for b in cells:
            if a < b and (cells[a] & cells[b]).any():
                assert plane_of[a] != plane_of[b]
    assert planes.shape[0] >= 2


def test_three_overlapping_cells_take_three_planes_and_the_lone_one_joins_the_first():
    planes = pack_planes(_cells())
    assert planes.shape == (3, 40, 40)
    assert set(np.unique(planes[0])) == {0, 1, 4}


def test_round_trip_keeps_every_overlap(tmp_path):
    field = pack_planes(_cells(), dtype=np.uint16)
    stack = np.stack([field, np.zeros_like(field)])
    path = write_cell_planes(tmp_path / "cells.tif", stack, scale=(0.5, 0.5))
    back = read_cell_planes(path)
    np.testing.assert_array_equal(back, stack)
    with tifffile.TiffFile(path) as tif:
        assert json.loads(tif.pages[0].description)["axes"] == "NPYX"
    assert annotated_fields(back) == [0]
    overlap = unpack_planes(back[0])[1] & unpack_planes(back[0])[2]
    assert overlap.any()


def test_one_field_of_planes_reads_as_a_stack_of_one(tmp_path):
    field = pack_planes(_cells(), dtype=np.uint8)
    back = read_cell_planes(write_cell_planes(tmp_path / "one.tif", field))
    assert back.shape == (1, *field.shape)


def test_a_cell_in_two_planes_is_refused(tmp_path):
    bad = np.zeros((2, 10, 10), np.uint8)
    bad[0, :3, :3] = 1
    bad[1, 5:, 5:] = 1
    with pytest.raises(ValueError, match="more than one plane"):
        check_planes(bad)
    tifffile.imwrite(tmp_path / "bad.tif", bad[None], metadata={"axes": "NPYX"})
    with pytest.raises(ReadError, match="more than one plane"):
        read_cell_planes(tmp_path / "bad.tif")


def test_repack_gathers_painted_cells_into_fewest_planes():
    painted = np.zeros((3, 20, 20), np.uint16)
    painted[0, :5, :5] = 1
    painted[2, 10:15, 10:15] = 2  # does not overlap cell 1: fits the first plane
    assert repack_planes(painted).shape[0] == 1
