"""npe2 reader: TIFF stacks, OME-Zarr, folders of 2D slices or of 3D volumes, and 2D images, as
napari layer data.

A thin adapter over :mod:`napari_distill.core.io.read`. ``napari_get_reader`` returns None for
what it cannot read (so napari's other readers get their turn) and a reader function
otherwise; a file it claims but cannot read raises :class:`~napari_distill.core.io.ReadError`.
Labels and probability files written by napari-distill reopen as what they were saved from;
labels written by other software open as Labels layers too (:func:`read_path` says how).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .core import io

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]
PathOrPaths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _layer_name(path: Path) -> str:
    name = path.name if path.is_dir() and path.suffix.lower() != ".zarr" else path.stem
    return name[: -len(".ome")] if name.lower().endswith(".ome") else name


def _pixels(image: io.ImageData) -> tuple[Any, dict[str, Any]]:
    """The layer's data: a list of levels (finest first) when the file holds a pyramid."""
    if image.levels:
        return [image.data, *image.levels], {"multiscale": True}
    return image.data, {}


def _metadata(image: io.ImageData | io.ProbabilityData) -> dict[str, Any]:
    return {"path": str(image.path), "unit": image.unit}


def _image_layer(image: io.ImageData) -> LayerData:
    data, extra = _pixels(image)
    kwargs = {
        "name": _layer_name(image.path),
        "scale": image.scale,
        "rgb": image.rgb,
        "metadata": _metadata(image),
        **extra,
    }
    return data, kwargs, "image"


def _labels_layer(labels: io.ImageData) -> LayerData:
    data, extra = _pixels(labels)
    kwargs = {
        "name": _layer_name(labels.path),
        "scale": labels.scale,
        "metadata": _metadata(labels),
        **extra,
    }
    return data, kwargs, "labels"


def read_labels_layer(path: str | os.PathLike[str]) -> LayerData:
    """Read ``path`` as a napari Labels layer tuple ``(data, kwargs, "labels")``."""
    return _labels_layer(io.read_labels(path))


def _probabilities_layer(probabilities: io.ProbabilityData) -> LayerData:
    metadata = _metadata(probabilities)
    metadata["class_ids"] = list(probabilities.class_ids)
    kwargs = {
        "name": _layer_name(probabilities.path),
        "scale": (1.0, *probabilities.scale),  # the class axis has no physical size
        "metadata": metadata,
        "contrast_limits": (0.0, 1.0),
    }
    return probabilities.data, kwargs, "image"


def _layer(kind: str, data: io.ImageData | io.ProbabilityData) -> LayerData:
    if kind == "labels":
        return _labels_layer(data)
    if kind == "probabilities":
        return _probabilities_layer(data)
    return _image_layer(data)


# Axis names of a cell planes layer (docs/cells.md): the plane axis first, then the fields'.
CELL_AXES = {4: ("plane", "field", "y", "x"), 3: ("plane", "y", "x")}


def _cell_planes_layer(path: Path, meta: dict[str, Any]) -> LayerData:
    """Cell planes as one Labels layer, ``(P, N, H, W)`` (``(P, H, W)`` when the file holds one
    field). The file's ``(N, P, H, W)`` is turned so that the plane axis comes first: napari
    lines layers up by their last axes, so the field slider then moves the fields image and
    the nuclei with the cells. Overlapping cells lie in different planes."""
    data = io.read_cell_planes(path)
    data = data[0] if meta.get("axes") == "PYX" else data.swapaxes(0, 1)
    spatial = [float(s) for s in (meta.get("scale") or [1.0, 1.0])[-2:]]
    kwargs = {
        "name": _layer_name(path),
        "scale": (1.0,) * (data.ndim - 2) + tuple(spatial),
        "axis_labels": CELL_AXES[data.ndim],
        "metadata": {"path": str(path), "unit": meta.get("unit"), "cell_planes": True},
    }
    return data, kwargs, "labels"


def read_volume_folder(volumes: Sequence[Path]) -> list[LayerData]:
    """One layer per volume of a folder of 3D stacks, each lazy (memory-mapped or dask, see
    :func:`napari_distill.core.io.read_volume`); ``<stem>_labels.tif`` files open as Labels
    layers (in memory: they are painted), named as their files.

    Only the first volume and its labels are shown: the volumes share one space, so the top
    one hides the others anyway, and every visible layer is sliced and drawn at each move of
    the slider (docs/benchmarks.md, "Many volumes in one viewer"). The layer list's eye shows
    another; the Quality review's *All images* tab shows the image of the row chosen.
    """
    layers = []
    for path in volumes:
        if io.is_labels_name(path):
            layers.append(_labels_layer(io.read_labels(path)))
        else:
            layers.append(_image_layer(io.read_volume(path)))
    first = next((kwargs["name"] for _, kwargs, kind in layers if kind == "image"), None)
    for _data, kwargs, _kind in layers:
        if kwargs["name"] not in (first, f"{first}{io.LABELS_NAME_SUFFIX}"):
            kwargs["visible"] = False
    return layers


def read_path(path: str | os.PathLike[str]) -> list[LayerData]:
    """Read one file or folder into a list holding one layer data tuple (a folder of 3D
    volumes: one per volume, :func:`read_volume_folder`).

    A labels image opens as a Labels layer: napari-distill's own labels files, and any other
    integer image whose values look like labels (0 the commonest value, flat non-zero
    patches) or whose name says so (``*_mask.tif``, ``labels/``...) and whose values agree
    in part; see :mod:`napari_distill.core.io.kinds` for the exact rule. An OME-Zarr image
    comes with a Labels layer for each of its labels groups. Cell planes written by
    :func:`~napari_distill.core.io.write_cell_planes` open as one Labels layer with a plane
    axis (:func:`_cell_planes_layer`).
    """
    planes = io.cell_planes_metadata(path)
    if planes:
        return [_cell_planes_layer(Path(path), planes)]
    volumes = io.volumes_in(path)
    if volumes:
        return read_volume_folder(volumes)
    layers = [_layer(*io.read_any(path))]
    if io.ngff_kind(path) == "image":
        for group in io.ngff_labels(path):
            layer = _labels_layer(io.read_ngff(group))
            layer[1]["name"] = f"{_layer_name(Path(path))} {group.name}"
            layers.append(layer)
    return layers


def read_stack(paths: Sequence[str | os.PathLike[str]]) -> list[LayerData]:
    """Read several 2D image files, in the order given, as one stack layer (labels by the
    same rule as :func:`read_path`, the first file's name standing for the stack's)."""
    image = io.read_image_stack(paths)
    if io.looks_like_labels(image):
        return [_labels_layer(io.as_labels(image))]
    return [_image_layer(image)]


def _read(path: PathOrPaths) -> list[LayerData]:
    if isinstance(path, (str, os.PathLike)):
        return read_path(path)
    paths = list(path)
    return read_path(paths[0]) if len(paths) == 1 else read_stack(paths)


def napari_get_reader(path: PathOrPaths) -> ReaderFunction | None:
    """The reader for ``path`` (a path or a list of paths), or None to let others read it.

    A list of several files is read as one stack of 2D slices (napari's "open as stack").
    """
    if isinstance(path, (str, os.PathLike)):
        return _read if io.can_read(path) else None
    paths = list(path)
    if not paths:
        return None
    if len(paths) > 1 and not all(Path(p).is_file() for p in paths):
        return None  # a stack is made of files, not folders
    return _read if all(io.can_read(p) for p in paths) else None
