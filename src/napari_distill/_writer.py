"""npe2 single-layer writers: labels and images (probability maps) to TIFF.

A thin adapter over :mod:`napari_distill.core.io.read`. napari's "Save Selected Layers" has
already asked before replacing a file, so these writers pass ``overwrite=True``; the core's
default stays False. The layer's scale (and unit, when it is known) is kept in the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .core import io


def _check_single_scale(data: Any, meta: dict[str, Any]) -> None:
    if meta.get("multiscale") or isinstance(data, list):
        raise ValueError("napari-distill writes single-resolution layers, not multiscale data")


def _unit(meta: dict[str, Any]) -> str | None:
    """``"micrometer"`` when the layer's metadata or napari's units say so, else None."""
    unit = (meta.get("metadata") or {}).get("unit")
    if unit is not None:
        return str(unit)
    units = meta.get("units")  # napari >= 0.6: one pint unit per axis
    if units and all(str(u) == io.MICROMETER for u in units):
        return io.MICROMETER
    return None


def _scale(meta: dict[str, Any]) -> tuple[float, ...] | None:
    scale = meta.get("scale")
    return None if scale is None else tuple(float(v) for v in scale)


def _cell_planes(data: Any, meta: dict[str, Any]) -> np.ndarray | None:
    """The core's ``(N, P, H, W)`` (or one field's ``(P, H, W)``) of a cells layer, or None.

    A layer marked ``metadata["cell_planes"]`` (the reader's, the cells task's) holds its plane
    axis first, ``(P, N, H, W)``; any other 4D labels layer is taken as ``(N, P, H, W)``.
    """
    marked = bool((meta.get("metadata") or {}).get("cell_planes"))
    if np.ndim(data) == 4:
        planes = np.asarray(data)
        return planes.swapaxes(0, 1) if marked else planes
    return np.asarray(data) if marked and np.ndim(data) == 3 else None


def write_labels_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write a Labels layer to one TIFF (uint8/16/32 chosen from the largest label).

    Cell planes (:func:`_cell_planes`) are written by
    :func:`~napari_distill.core.io.write_cell_planes`: lossless, ``(N, P, H, W)`` with its axes
    in the metadata, and refused when a cell lies in two planes of a field.
    """
    _check_single_scale(data, meta)
    planes = _cell_planes(data, meta)
    if planes is not None:
        scale = _scale(meta)
        written = io.write_cell_planes(path, planes, scale, unit=_unit(meta), overwrite=True)
        return [str(written)]
    written = io.write_labels(path, data, _scale(meta), unit=_unit(meta), overwrite=True)
    return [str(written)]


def write_image_layer(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write an Image layer to one TIFF.

    A floating-point layer whose ``metadata["class_ids"]`` names each entry of its first axis
    (as the reader and the prediction widgets set it) is written as probabilities
    ``(C, [Z,] Y, X)``; any other image is written as it is, dtype and colours kept.
    """
    _check_single_scale(data, meta)
    class_ids = (meta.get("metadata") or {}).get("class_ids")
    scale = _scale(meta)
    if (
        class_ids is not None
        and np.dtype(data.dtype).kind == "f"
        and data.ndim in (3, 4)
        and len(class_ids) == data.shape[0]
    ):
        written = io.write_probabilities(
            path,
            data,
            None if scale is None else scale[1:],
            class_ids=[int(c) for c in class_ids],
            unit=_unit(meta),
            overwrite=True,
        )
    else:
        written = io.write_image(
            path, data, scale, rgb=bool(meta.get("rgb")), unit=_unit(meta), overwrite=True
        )
    return [str(written)]
