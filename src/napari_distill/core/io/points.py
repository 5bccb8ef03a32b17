"""Points with a class, as weak labels: read a CSV of ``(slice, y, x, class)``, draw disks.

A click is one pixel; a network learns little from one pixel and a click is rarely exactly on
the structure's centre, so each point becomes a small disk of its class (``radius`` pixels,
a setting of the ``mixed`` strategy). Class 0 in a points file is the background; in the weak
labels it becomes ``background_label``, since 0 there means unknown.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .common import ReadError

POINT_COLUMNS = ("slice", "y", "x", "class")


def read_points_csv(path: str | os.PathLike[str]) -> np.ndarray:
    """Rows ``(slice, y, x, class)`` from a CSV file, as ``(K, 4)`` int64.

    The file has a header naming the columns ``slice, y, x, class`` (any order, other columns
    ignored; coordinates are rounded to the nearest pixel), or four numeric columns in that
    order without a header.

    Raises
    ------
    ReadError
        A missing column, a value that is not a number, or a negative class.
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise ReadError(f"cannot read the points file {path}: {error}") from error
    if not rows:
        return np.zeros((0, 4), np.int64)
    header = [cell.strip().lower() for cell in rows[0]]
    try:
        [float(cell) for cell in rows[0]]
        columns, body = [0, 1, 2, 3], rows
    except ValueError:
        missing = [name for name in POINT_COLUMNS if name not in header]
        if missing:
            raise ReadError(
                f"the points file {path} has no column {', '.join(missing)}: it needs "
                f"{', '.join(POINT_COLUMNS)}"
            ) from None
        columns, body = [header.index(name) for name in POINT_COLUMNS], rows[1:]
    try:
        values = np.array([[float(row[c]) for c in columns] for row in body]).reshape(-1, 4)
    except (ValueError, IndexError) as error:
        raise ReadError(f"the points file {path} has a row that is not four numbers") from error
    points = np.rint(values).astype(np.int64)
    if (points[:, 3] < 0).any():
        raise ReadError(f"the points file {path} has a negative class")
    return points


def points_to_labels(
    points: np.ndarray,
    shape: tuple[int, ...],
    radius: float,
    background_label: int,
) -> np.ndarray:
    """Weak labels of ``shape`` (``(N, H, W)`` or ``(H, W)``) with a disk per point.

    Points outside the stack are dropped; where disks of different classes overlap, the later
    point wins. Class 0 is written as ``background_label``.
    """
    weak = np.zeros(shape if len(shape) == 3 else (1, *shape), np.uint16)
    n, height, width = weak.shape
    r = max(0.0, float(radius))
    reach = int(np.floor(r))
    offsets = [
        (dy, dx)
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
        if dy * dy + dx * dx <= r * r
    ]
    for z, y, x, label in np.asarray(points, np.int64).reshape(-1, 4):
        if not (0 <= z < n and 0 <= y < height and 0 <= x < width):
            continue
        value = background_label if label == 0 else label
        for dy, dx in offsets:
            if 0 <= y + dy < height and 0 <= x + dx < width:
                weak[z, y + dy, x + dx] = value
    return weak.reshape(shape)
