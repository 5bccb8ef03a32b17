"""Overlapping cells as *planes*: the product's format for Pap smear cells, its packer and files.

A Labels layer (or a TIFF) holds one id per pixel, so a pixel shared by two overlapping cells
would lose one of them. Cells are therefore stored as planes: an integer array ``(P, H, W)``
per field (``(N, P, H, W)`` for a stack of fields) in which every cell lies whole in exactly
one plane, cells within one plane do not overlap, and ids are unique within a field (0 is
background). Nuclei never overlap and are a plain instance array ``(N, H, W)``.

The packer is a greedy colouring of the overlap graph (cells in order, each into the first
plane where it touches no pixel of another cell), so two cells sharing even one pixel never
share a plane; the number of planes is at most the largest clique of overlapping cells plus
what greediness costs, a handful in practice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from .common import ReadError
from .tiff import napari_distill_metadata
from .write import check_target, labels_dtype, write_tiff_atomically

CELL_PLANES_KIND = "cell_planes"


def pack_planes(
    masks: Sequence[np.ndarray],
    ids: Sequence[int] | None = None,
    dtype=np.uint32,
    shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Pack possibly overlapping boolean masks ``(H, W)`` into planes ``(P, H, W)``.

    Parameters
    ----------
    masks:
        One boolean mask per cell, all of one shape; empty masks are skipped.
    ids:
        The id of each cell (default ``1..len(masks)``); must be unique and positive.
    shape:
        ``(H, W)`` of the field, needed only when there are no masks.

    Returns
    -------
    np.ndarray
        ``(P, H, W)`` of ``dtype``; at least one plane (all zero when there are no cells).
    """
    if ids is None:
        ids = range(1, len(masks) + 1)
    ids = [int(i) for i in ids]
    if len(ids) != len(masks):
        raise ValueError(f"{len(masks)} masks but {len(ids)} ids")
    if len(set(ids)) != len(ids) or any(i <= 0 for i in ids):
        raise ValueError("cell ids must be unique and positive")
    if not masks:
        if shape is None:
            raise ValueError("no masks: pass the field's shape")
        return np.zeros((1, *shape), dtype)
    shape = np.asarray(masks[0]).shape
    planes: list[np.ndarray] = []
    for cell_id, mask in zip(ids, masks, strict=True):
        mask = np.asarray(mask, bool)
        if mask.shape != shape:
            raise ValueError(f"masks differ in shape: {mask.shape} and {shape}")
        if not mask.any():
            continue
        for plane in planes:
            if not plane[mask].any():
                plane[mask] = cell_id
                break
        else:
            plane = np.zeros(shape, dtype)
            plane[mask] = cell_id
            planes.append(plane)
    return np.stack(planes) if planes else np.zeros((1, *shape), dtype)


def unpack_planes(planes: np.ndarray) -> dict[int, np.ndarray]:
    """Every cell of one field's planes ``(P, H, W)`` as ``{id: boolean mask (H, W)}``.

    Raises
    ------
    ValueError
        An id appears in two planes (a cell must lie whole in one plane).
    """
    planes = np.asarray(planes)
    if planes.ndim == 2:
        planes = planes[None]
    cells: dict[int, np.ndarray] = {}
    for plane in planes:
        for cell_id in np.unique(plane):
            if cell_id == 0:
                continue
            if int(cell_id) in cells:
                raise ValueError(f"cell {int(cell_id)} lies in more than one plane")
            cells[int(cell_id)] = plane == cell_id
    return cells


def repack_planes(planes: np.ndarray) -> np.ndarray:
    """Planes as the packer would write them (fewest planes it finds, ids kept); for painted
    planes, where a user may have put a cell into any plane."""
    planes = np.asarray(planes)
    cells = unpack_planes(planes)
    return pack_planes(list(cells.values()), list(cells), planes.dtype, planes.shape[-2:])


def stack_planes(fields: Sequence[np.ndarray], dtype=None) -> np.ndarray:
    """Per-field planes ``(P_i, H, W)`` into one ``(N, max P_i, H, W)`` array (zero-padded)."""
    if not fields:
        raise ValueError("no fields")
    n_planes = max(f.shape[0] for f in fields)
    dtype = dtype or np.result_type(*[f.dtype for f in fields])
    out = np.zeros((len(fields), n_planes, *fields[0].shape[1:]), dtype)
    for index, field in enumerate(fields):
        out[index, : field.shape[0]] = field
    return out


def check_planes(planes: np.ndarray) -> None:
    """Raise ValueError unless ``planes`` ``(N, P, H, W)`` or ``(P, H, W)`` keep every cell in
    one plane (ids unique within a field)."""
    planes = np.asarray(planes)
    if planes.ndim not in (3, 4):
        raise ValueError(f"cell planes are (P, H, W) or (N, P, H, W), got shape {planes.shape}")
    if planes.dtype.kind not in "iu" or planes.min(initial=0) < 0:
        raise ValueError("cell planes must hold non-negative integer ids")
    for index, field in enumerate(planes if planes.ndim == 4 else planes[None]):
        seen: set[int] = set()
        for plane in field:
            ids = set(np.unique(plane).tolist()) - {0}
            twice = seen & ids
            if twice:
                raise ValueError(f"field {index}: cell {min(twice)} lies in more than one plane")
            seen |= ids


def annotated_fields(planes: np.ndarray) -> list[int]:
    """Fields ``(N, P, H, W)`` with at least one painted cell: the others are unannotated."""
    planes = np.asarray(planes)
    return [i for i in range(planes.shape[0]) if planes[i].any()]


def write_cell_planes(
    path: str | os.PathLike[str],
    planes: np.ndarray,
    scale: Sequence[float] | None = None,
    *,
    unit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write cell planes ``(N, P, H, W)`` or ``(P, H, W)`` to a lossless TIFF (zlib) whose
    metadata names the axes (``NPYX`` / ``PYX``) and the kind ``cell_planes``, so that
    :func:`read_cell_planes` (and a person with tifffile) knows which axis is which."""
    planes = np.asarray(planes)
    check_planes(planes)
    axes = "NPYX" if planes.ndim == 4 else "PYX"
    spatial = tuple(float(s) for s in scale[-2:]) if scale is not None else (1.0, 1.0)
    full_scale = (1.0,) * (planes.ndim - 2) + spatial
    return write_tiff_atomically(
        check_target(path, overwrite),
        planes,
        labels_dtype(planes),
        axes=axes,
        scale=full_scale,
        unit=unit,
        kind=CELL_PLANES_KIND,
        overwrite=overwrite,
    )


def read_cell_planes(path: str | os.PathLike[str]) -> np.ndarray:
    """Read cell planes as ``(N, P, H, W)``.

    A file written by :func:`write_cell_planes` says its axes; any other integer TIFF is read
    as ``(N, P, H, W)`` when 4D, as one field's ``(P, H, W)`` when 3D and marked as planes, and
    as one plane per field ``(N, 1, H, W)`` (cells that do not overlap) when 3D otherwise or 2D.

    Raises
    ------
    ReadError
        Not integers, negative, or a cell found in two planes of one field.
    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            description = tif.pages[0].description if tif.pages else ""
    except (OSError, ValueError, tifffile.TiffFileError) as error:
        raise ReadError(f"cannot read {path}: {error}") from error
    axes = ""
    try:
        meta = json.loads(description)
        if isinstance(meta, dict):
            axes = str(meta.get("axes", ""))
    except (ValueError, TypeError):
        pass
    if data.dtype.kind not in "biu":
        raise ReadError(f"{path} holds {data.dtype} values; cell planes must be integers")
    data = data.astype(np.uint8) if data.dtype.kind == "b" else data
    if data.ndim == 2:
        data = data[None, None]
    elif data.ndim == 3:
        data = data[None] if axes == "PYX" else data[:, None]
    elif data.ndim != 4:
        raise ReadError(f"{path}: cell planes are (N, P, H, W), got shape {data.shape}")
    try:
        check_planes(data)
    except ValueError as error:
        raise ReadError(f"{path}: {error}") from error
    return data


def cell_planes_metadata(path: str | os.PathLike[str]) -> dict:
    """The metadata of a TIFF that :func:`write_cell_planes` wrote (``axes``, ``scale``,
    ``unit``), or ``{}`` for any other file; reads one IFD, not the pixels."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in (".tif", ".tiff"):
        return {}
    meta = napari_distill_metadata(path)
    return meta if meta.get("napari_distill") == CELL_PLANES_KIND else {}
