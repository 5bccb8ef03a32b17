"""Writing OME-Zarr (NGFF 0.5, zarr v3) labels and images atomically, chunk by chunk.

Labels go either into an existing OME-Zarr image, as its ``labels/<name>`` group with the
image's axes, units and scale (what the NGFF spec calls image labels, which napari and
other viewers show over the image), or into a new container of their own. Either way the
group is written under a hidden temporary name beside its place and renamed into it, so a
reader sees the old labels or the complete new ones, never half of them. Arrays are written
a block of slices at a time: a memory-mapped or dask input is never whole in memory.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .ngff import (
    LABELS_GROUP,
    LABELS_NAME,
    NGFF_VERSION,
    ZARR_SUFFIX,
    ngff_kind,
    read_multiscale,
)
from .write import check_output_folder, check_scale, labels_dtype

logger = logging.getLogger(__name__)

#: Chunks of at most this many slices and this many pixels along Y and X.
CHUNK_SLICES = 8
CHUNK_PIXELS = 512


def labels_target(path: str | os.PathLike[str], name: str = LABELS_NAME) -> Path:
    """Where labels written to ``path`` go: ``path/labels/<name>`` when ``path`` is an
    OME-Zarr image, else ``path`` itself (a new container)."""
    container = Path(path)
    return container / LABELS_GROUP / name if ngff_kind(container) == "image" else container


def check_ngff_output(
    path: str | os.PathLike[str], overwrite: bool, name: str = LABELS_NAME
) -> Path:
    """Check an OME-Zarr labels output before any work; return where the labels will go.

    ``path`` ends in ``.zarr``; it is an existing OME-Zarr image (the labels become its
    ``labels/<name>`` group) or a new container. What is there already is replaced only with
    ``overwrite``.

    Raises
    ------
    ValueError
        ``path`` does not end in ``.zarr``.
    FileExistsError
        The labels (or another folder at ``path``) exist and ``overwrite`` is False.
    NotADirectoryError, FileNotFoundError, PermissionError
        Nothing can be written there.
    """
    container = Path(path)
    if container.suffix.lower() != ZARR_SUFFIX:
        raise ValueError(f"cannot write {container}: an OME-Zarr container's name ends in .zarr")
    if container.is_file():
        raise FileExistsError(f"{container} is a file, not an OME-Zarr container")
    target = labels_target(container, name)
    if target != container:
        check_output_folder(container)
    else:
        check_output_folder(container.parent)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; choose another name, or pass overwrite=True "
            "(--overwrite) to replace it"
        )
    return target


def _axes(names: Sequence[str], unit: str | None) -> list[dict[str, Any]]:
    axes: list[dict[str, Any]] = []
    for axis in names:
        entry: dict[str, Any] = {"name": axis, "type": "channel" if axis == "c" else "space"}
        if unit and axis != "c":
            entry["unit"] = unit
        axes.append(entry)
    return axes


def _multiscales(
    names: Sequence[str], scales: Sequence[Sequence[float]], unit: str | None, name: str
) -> list[dict[str, Any]]:
    datasets = [
        {"path": str(level), "coordinateTransformations": [{"type": "scale", "scale": list(s)}]}
        for level, s in enumerate(scales)
    ]
    return [{"name": name, "axes": _axes(names, unit), "datasets": datasets}]


def _write_array(group: Any, key: str, array: Any, dtype: np.dtype, names: Sequence[str]) -> None:
    """``array`` into a new chunked array ``key`` of ``group``, a block of slices at a time."""
    spatial = [i for i, a in enumerate(names) if a != "c"]
    chunks = list(array.shape)
    for i in spatial[-2:]:
        chunks[i] = min(array.shape[i], CHUNK_PIXELS)
    if len(spatial) == 3:
        chunks[spatial[0]] = min(array.shape[spatial[0]], CHUNK_SLICES)
    target = group.create_array(
        key,
        shape=tuple(array.shape),
        dtype=dtype,
        chunks=tuple(chunks),
        fill_value=0,
        dimension_names=list(names),
    )
    if len(spatial) < 3:
        target[...] = np.asarray(array).astype(dtype, copy=False)
        return
    axis = spatial[0]
    step = chunks[axis]
    for start in range(0, array.shape[axis], step):
        index = (slice(None),) * axis + (slice(start, start + step),)
        target[index] = np.asarray(array[index]).astype(dtype, copy=False)


def _replace_folder(temporary: Path, target: Path, overwrite: bool) -> None:
    """Rename ``temporary`` to ``target``; an existing ``target`` (with ``overwrite``) is
    moved aside first and removed once the new one is in place."""
    old = None
    if target.exists():
        if not overwrite:
            raise FileExistsError(f"{target} appeared while writing; nothing was replaced")
        old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
        os.replace(target, old)
    os.replace(temporary, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_group(
    target: Path, attributes: dict[str, Any], arrays: Sequence[tuple[Any, np.dtype]],
    names: Sequence[str], overwrite: bool,
) -> None:  # fmt: skip
    """A new zarr v3 group at ``target`` (via a temporary folder) with ``arrays`` as levels
    ``0, 1, ...`` and ``attributes`` under ``"ome"``."""
    import zarr

    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        group = zarr.open_group(str(temporary), mode="w-", zarr_format=3)
        for level, (array, dtype) in enumerate(arrays):
            _write_array(group, str(level), array, dtype, names)
        group.attrs["ome"] = attributes
        _replace_folder(temporary, target, overwrite)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def write_ngff_labels(
    path: str | os.PathLike[str],
    labels: Any,
    scale: Sequence[float] | None = None,
    *,
    unit: str | None = None,
    overwrite: bool = False,
    name: str = LABELS_NAME,
) -> Path:
    """Write 2D or 3D labels (numpy, memmap or dask) as OME-Zarr; return the labels group.

    Into an existing OME-Zarr image at ``path``: its ``labels/<name>`` group, with the
    image's axis names, units and finest scale (``scale`` and ``unit`` are then not used;
    the labels must have the image's spatial shape). Else a new container at ``path`` whose
    root is the labels (``image-label`` metadata), with ``scale`` and ``unit``. The dtype is
    the smallest of uint8 / uint16 / uint32 holding every label.

    Raises
    ------
    FileExistsError
        The labels exist and ``overwrite`` is False.
    ValueError
        Labels are not 2D/3D integers, or their shape is not the image's.
    """
    if labels.ndim not in (2, 3) or 0 in labels.shape:
        raise ValueError(f"labels must be 2D or 3D and non-empty, got shape {labels.shape}")
    dtype = labels_dtype(labels)
    target = check_ngff_output(path, overwrite, name)
    names: tuple[str, ...] = ("z", "y", "x")[-labels.ndim :]
    if target != Path(path):  # into an image's container: its axes, scales and levels
        names, scales, axis_unit, arrays = _image_levels(Path(path), labels, dtype)
        source = {"source": {"image": "../../"}}
    else:
        scales = [check_scale(scale, labels.ndim)]
        axis_unit, arrays, source = unit, [(labels, dtype)], {}
    attributes = {
        "version": NGFF_VERSION,
        "multiscales": _multiscales(names, scales, axis_unit, name),
        "image-label": {"version": NGFF_VERSION, **source},
    }
    if target != Path(path):
        target.parent.mkdir(exist_ok=True)
    _write_group(target, attributes, arrays, names, overwrite)
    if target != Path(path):
        _list_label(target.parent, name)
    logger.info("wrote labels %s %s to %s", tuple(labels.shape), dtype, target)
    return target


def _image_levels(
    container: Path, labels: Any, dtype: np.dtype
) -> tuple[tuple[str, ...], list[tuple[float, ...]], str | None, list[tuple[Any, np.dtype]]]:
    """The axis names, per-level scales, unit and arrays of labels written into the image at
    ``container``: one level per image level (the spec wants as many), each taken from
    ``labels`` by nearest neighbour at that level's spacing (lazily, with dask)."""
    import dask.array as da
    import zarr

    image = read_multiscale(container)
    spatial = [i for i, a in enumerate(image.axes) if a in ("z", "y", "x")]
    group = zarr.open_group(str(container), mode="r")
    shapes = [tuple(group[p].shape[i] for i in spatial) for p in image.paths]
    if shapes[0] != tuple(labels.shape):
        raise ValueError(f"labels of shape {tuple(labels.shape)} for an image of {shapes[0]}")
    names = tuple(image.axes[i] for i in spatial)
    axis_unit = next((image.units[i] for i in spatial if image.units[i]), None)
    lazy = labels if hasattr(labels, "compute") else da.from_array(labels, chunks=-1)
    arrays: list[tuple[Any, np.dtype]] = [(labels, dtype)]
    scales = [tuple(level[i] for i in spatial) for level in image.scales]
    for shape, level_scale in zip(shapes[1:], scales[1:], strict=True):
        level = lazy
        for axis, size in enumerate(shape):
            if size != shapes[0][axis]:  # pixel i of the level sits at i * its spacing
                ratio = level_scale[axis] / scales[0][axis]
                index = np.minimum((np.arange(size) * ratio).astype(int), shapes[0][axis] - 1)
                level = da.take(level, index, axis=axis)
        arrays.append((level, dtype))
    return names, scales, axis_unit, arrays


def _list_label(folder: Path, name: str) -> None:
    """Add ``name`` to the ``labels`` group's list (the group made when it is missing)."""
    import zarr

    group = zarr.open_group(str(folder), mode="a", zarr_format=3)
    ome = dict(group.attrs.get("ome", {}))
    names = list(ome.get("labels", []))
    if name not in names:
        names.append(name)
    group.attrs["ome"] = {**ome, "version": NGFF_VERSION, "labels": names}


def write_ngff_image(
    path: str | os.PathLike[str],
    image: Any,
    scale: Sequence[float] | None = None,
    *,
    rgb: bool = False,
    unit: str | None = None,
    levels: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write a 2D/3D image (``rgb``: colours last, stored as a ``c`` axis first) as a new
    OME-Zarr container with ``levels`` resolution levels (each half the last in Y and X,
    every other pixel kept); :func:`~napari_distill.core.io.ngff.read_ngff` reads it back."""
    container = Path(path)
    if container.suffix.lower() != ZARR_SUFFIX:
        raise ValueError(f"cannot write {container}: an OME-Zarr container's name ends in .zarr")
    spatial_ndim = image.ndim - (1 if rgb else 0)
    if spatial_ndim not in (2, 3) or levels < 1:
        raise ValueError(f"image must be 2D or 3D with levels >= 1, got {tuple(image.shape)}")
    check_output_folder(container.parent)
    if container.exists() and not overwrite:
        raise FileExistsError(f"{container} already exists; pass overwrite=True to replace it")
    spatial_scale = check_scale(scale, spatial_ndim)
    names = ("c",) * rgb + ("z", "y", "x")[-spatial_ndim:]
    data = np.moveaxis(image, -1, 0) if rgb else image
    arrays, scales = [], []
    for level in range(levels):
        step = 2**level
        index = (slice(None),) * (data.ndim - 2) + (slice(None, None, step),) * 2
        arrays.append((data[index], np.dtype(data.dtype)))
        factors = (1.0,) * (spatial_ndim - 2) + (float(step),) * 2
        sizes = tuple(s * f for s, f in zip(spatial_scale, factors, strict=True))
        scales.append((1.0,) * rgb + sizes)
    attributes = {
        "version": NGFF_VERSION,
        "multiscales": _multiscales(names, scales, unit, container.stem),
    }
    _write_group(container, attributes, arrays, names, overwrite)
    return container
