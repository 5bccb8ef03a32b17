"""Reading OME-Zarr (OME-NGFF) images and labels lazily, with their voxel size.

An OME-Zarr container is a folder (``scan.ome.zarr``) holding a zarr group whose metadata
(``multiscales``) names its resolution levels (``datasets``, finest first), its axes and each
level's ``coordinateTransformations`` scale. NGFF 0.5 (zarr v3) keeps that metadata under the
group attributes' ``"ome"`` key; NGFF 0.4 (zarr v2) at the top of ``.zattrs``: both are read.
Labels live in the image's ``labels/<name>`` groups (``image-label`` metadata); a container
napari-distill writes for labels alone has ``image-label`` at its root.

Pixels stay on disk: every level is a dask array over the zarr chunks. The metadata is parsed
here with zarr directly (no ``ome-zarr`` dependency): its pieces are few and fixed by the spec.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    MICROMETER,
    ImageData,
    ReadError,
    check_pixel_dtype,
    micrometres_per,
    native,
)

NGFF_VERSION = "0.5"
ZARR_SUFFIX = ".zarr"
LABELS_GROUP = "labels"
#: The name of the labels group napari-distill writes into an image's container.
LABELS_NAME = "napari_distill"
_SPATIAL = ("z", "y", "x")


def _attributes(folder: Path) -> dict[str, Any] | None:
    """The OME attributes of the zarr group at ``folder`` (v3 ``zarr.json`` or v2
    ``.zattrs``), read as JSON without opening the store; None when it is no zarr group."""
    v3 = folder / "zarr.json"
    if v3.is_file():
        try:
            meta = json.loads(v3.read_text())
        except (OSError, ValueError):
            return None
        if meta.get("node_type") != "group":
            return None
        attrs = meta.get("attributes", {})
        return attrs.get("ome", attrs)
    v2 = folder / ".zattrs"
    if v2.is_file() and (folder / ".zgroup").is_file():
        try:
            return json.loads(v2.read_text())
        except (OSError, ValueError):
            return None
    return None


def ngff_kind(path: str | Path) -> str | None:
    """``"image"`` or ``"labels"`` for an OME-Zarr multiscale group, else None (cheap: one
    small JSON file is read)."""
    folder = Path(path)
    if not folder.is_dir():
        return None
    attrs = _attributes(folder)
    if not attrs or not attrs.get("multiscales"):
        return None
    return "labels" if "image-label" in attrs else "image"


def is_ngff(path: str | Path) -> bool:
    """Whether ``path`` is an OME-Zarr image or labels group that napari-distill reads."""
    return ngff_kind(path) is not None


def ngff_labels(path: str | Path) -> list[Path]:
    """The labels groups of an OME-Zarr image (``labels/<name>``, in the order listed)."""
    folder = Path(path) / LABELS_GROUP
    attrs = _attributes(folder) if folder.is_dir() else None
    names = (attrs or {}).get("labels", [])
    return [folder / name for name in names if ngff_kind(folder / name) == "labels"]


@dataclass(frozen=True)
class Multiscale:
    """What a multiscale group's metadata says, before any pixel is read."""

    paths: tuple[str, ...]  # the levels' array paths, finest first
    axes: tuple[str, ...]  # axis names, e.g. ("c", "z", "y", "x")
    units: tuple[str | None, ...]
    scales: tuple[tuple[float, ...], ...]  # each level's voxel size, one value per axis
    kind: str  # "image" or "labels"

    @property
    def scale(self) -> tuple[float, ...]:
        """The finest level's voxel size."""
        return self.scales[0]


def read_multiscale(path: str | Path) -> Multiscale:
    """Parse the ``multiscales`` metadata of an OME-Zarr group; :class:`ReadError` if odd."""
    folder = Path(path)
    attrs = _attributes(folder) if folder.is_dir() else None
    if not attrs or not attrs.get("multiscales"):
        raise ReadError(f"{folder} is not an OME-Zarr image (no multiscales metadata)")
    try:
        first = attrs["multiscales"][0]
        axes_meta = first.get("axes") or [{"name": a} for a in "tczyx"]
        axes = tuple(str(a["name"] if isinstance(a, dict) else a).lower() for a in axes_meta)
        units = tuple(a.get("unit") if isinstance(a, dict) else None for a in axes_meta)
        datasets = first["datasets"]
        paths = tuple(str(d["path"]) for d in datasets)
        top = _scale(first.get("coordinateTransformations", []), len(axes))
        scales = tuple(
            tuple(
                a * b
                for a, b in zip(
                    _scale(d.get("coordinateTransformations", []), len(axes)), top, strict=True
                )
            )
            for d in datasets
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ReadError(f"{folder}: malformed OME-Zarr multiscales metadata ({exc})") from exc
    if not paths:
        raise ReadError(f"{folder}: its OME-Zarr multiscales metadata names no dataset")
    kind = "labels" if "image-label" in attrs else "image"
    return Multiscale(paths, axes, units, scales, kind)


def _scale(transforms: list[dict[str, Any]], ndim: int) -> tuple[float, ...]:
    for transform in transforms:
        if transform.get("type") == "scale":
            values = tuple(float(v) for v in transform["scale"])
            if len(values) != ndim or not all(math.isfinite(v) and v > 0 for v in values):
                raise ValueError(f"scale {values} for {ndim} axes")
            return values
    return (1.0,) * ndim


def _spatial_scale(path: Path, meta: Multiscale) -> tuple[tuple[float, ...], str | None]:
    """The spatial axes' voxel size, in micrometres when every spatial unit is known."""
    spatial = [i for i, a in enumerate(meta.axes) if a in _SPATIAL]
    factors = [micrometres_per(meta.units[i]) for i in spatial]
    if all(f is not None for f in factors):
        return tuple(meta.scale[i] * f for i, f in zip(spatial, factors, strict=True)), MICROMETER
    return tuple(meta.scale[i] for i in spatial), None


def _arrange(path: Path, array: Any, axes: tuple[str, ...]) -> tuple[Any, bool]:
    """``array`` (dask) with its axes as napari-distill wants them: ``(Z,) Y, X (, C)``.

    A time axis of one point and a channel axis of one channel are dropped; 3 or 4 channels
    become colours, last.
    """
    import dask.array as da

    known = set(_SPATIAL) | {"c", "t"}
    if set(axes) - known or "y" not in axes or "x" not in axes or len(set(axes)) != len(axes):
        raise ReadError(f"{path} has axes {axes}; napari-distill reads (t, c,) (z,) y, x")
    if "t" in axes:
        if array.shape[axes.index("t")] != 1:
            raise ReadError(
                f"{path} holds {array.shape[axes.index('t')]} time points; napari-distill "
                "reads one 2D image or 3D stack: save one time point first"
            )
        array = da.take(array, 0, axis=axes.index("t"))
        axes = tuple(a for a in axes if a != "t")
    rgb = False
    if "c" in axes:
        channels = array.shape[axes.index("c")]
        if channels == 1:
            array = da.take(array, 0, axis=axes.index("c"))
            axes = tuple(a for a in axes if a != "c")
        elif channels in (3, 4):
            rgb = True
        else:
            raise ReadError(
                f"{path} has {channels} channels; napari-distill reads grey or RGB(A) images: "
                "save one channel as its own image first"
            )
    order = [axes.index(a) for a in (*_SPATIAL, "c") if a in axes]
    return da.transpose(array, order) if order != list(range(len(order))) else array, rgb


def read_ngff(path: str | Path) -> ImageData:
    """An OME-Zarr image (or labels group), lazily: ``data`` the finest level (dask),
    ``levels`` the coarser ones; ``scale`` from its ``coordinateTransformations``.

    Raises
    ------
    ReadError
        No multiscales metadata, more than one time point, other axes, or unreadable arrays.
    """
    import dask.array as da
    import zarr

    folder = Path(path)
    meta = read_multiscale(folder)
    try:
        group = zarr.open_group(str(folder), mode="r")
        arrays = [group[p] for p in meta.paths]
    except (KeyError, OSError, ValueError) as exc:
        raise ReadError(f"{folder}: cannot open its OME-Zarr arrays ({exc})") from exc
    levels = []
    rgb = False
    for array in arrays:
        if array.ndim != len(meta.axes):
            raise ReadError(f"{folder}: {array.ndim}D arrays for the axes {meta.axes}")
        check_pixel_dtype(folder, array.dtype)
        lazy = da.from_zarr(array)
        if lazy.dtype != native(lazy.dtype):
            lazy = lazy.astype(native(lazy.dtype))
        arranged, rgb = _arrange(folder, lazy, meta.axes)
        levels.append(arranged)
    spatial = levels[0].ndim - (1 if rgb else 0)
    if spatial not in (2, 3):
        raise ReadError(f"{folder} holds a {spatial}D image; napari-distill reads 2D and 3D")
    scale, unit = _spatial_scale(folder, meta)
    return ImageData(
        data=levels[0], scale=scale, rgb=rgb, path=folder, unit=unit, levels=tuple(levels[1:])
    )


def ngff_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype] | None:
    """``(shape, dtype)`` of an OME-Zarr image's finest level as read (``(Z, Y, X[, C])``),
    from its metadata only; None when it is not 3D."""
    import zarr

    folder = Path(path)
    meta = read_multiscale(folder)
    array = zarr.open_group(str(folder), mode="r")[meta.paths[0]]
    sizes = dict(zip(meta.axes, array.shape, strict=True))
    if "z" not in sizes or sizes.get("t", 1) != 1:
        return None
    shape = tuple(int(sizes[a]) for a in _SPATIAL)
    if sizes.get("c", 1) > 1:
        shape = (*shape, int(sizes["c"]))
    return shape, np.dtype(array.dtype)
