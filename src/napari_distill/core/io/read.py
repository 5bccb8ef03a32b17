"""Reading images and stacks with their voxel size; writing labels and probabilities as TIFF.

What is read:

- a 3D TIFF stack, a 2D TIFF (greyscale or RGB), a PNG, JPEG or BMP image;
- a folder of 2D slices (natural order: ``slice_2`` before ``slice_10``), or a list of files.

The voxel size becomes ``ImageData.scale`` (``(z, y, x)`` or ``(y, x)``), in micrometres when
the file states a unit (ImageJ, OME or TIFF resolution tags), 1.0 where unknown. Large stacks
stay on disk: uncompressed TIFFs are memory-mapped, other data above
:data:`LAZY_THRESHOLD_BYTES` becomes a dask array.

A file whose name napari-distill claims but cannot read raises :class:`ReadError` naming the
file and the problem. Written files are replaced atomically and never overwritten by default.
No napari here: :mod:`napari_distill._reader` and :mod:`napari_distill._writer` adapt this.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    IMAGE_SUFFIXES,
    ImageData,
    ProbabilityData,
    ReadError,
)
from .folders import volumes_in
from .kinds import looks_like_labels
from .ngff import ZARR_SUFFIX, ngff_kind, read_ngff
from .ngff_write import write_ngff_labels
from .repair import ReadWarning, repair_non_finite
from .slices import image_files_in, read_2d_or_tiff, read_slices
from .tiff import load_series, napari_distill_metadata, open_tiff, tiff_scale
from .write import (
    check_output_folder,
    check_output_path,
    check_scale,
    check_target,
    labels_dtype,
    probabilities_dtype,
    write_tiff_atomically,
)

__all__ = [
    "LAZY_THRESHOLD_BYTES",
    "ReadWarning",
    "as_labels",
    "can_read",
    "check_output_folder",
    "check_output_path",
    "file_kind",
    "read_any",
    "read_image",
    "read_image_stack",
    "read_labels",
    "read_probabilities",
    "write_image",
    "write_labels",
    "write_probabilities",
]

logger = logging.getLogger(__name__)

#: Compressed TIFFs and stacks of slices larger than this many bytes are read lazily (dask).
LAZY_THRESHOLD_BYTES = 512 * 1024**2

_DECLINED_FOLDER_SUFFIXES = (".zarr", ".n5")  # chunked formats other readers own, but OME-Zarr

PathLike = str | os.PathLike[str]


def can_read(path: PathLike) -> bool:
    """Whether :func:`read_image` takes ``path``: decided by name, or a folder's file names.

    Cheap: no image file is opened. A folder is taken when it holds image files directly, or
    when it is an OME-Zarr image or labels group (its small metadata file is read).
    """
    candidate = Path(path)
    if ngff_kind(candidate) is not None:
        return True
    if candidate.suffix.lower() in _DECLINED_FOLDER_SUFFIXES:
        return False
    if candidate.is_dir():
        return bool(image_files_in(candidate))
    return candidate.is_file() and candidate.suffix.lower() in IMAGE_SUFFIXES


def _existing(path: PathLike) -> Path:
    candidate = Path(path)
    if not candidate.exists():
        raise FileNotFoundError(f"{candidate} does not exist")
    return candidate


def read_image(path: PathLike) -> ImageData:
    """Read a 2D image, a 3D TIFF stack, an OME-Zarr image (``*.ome.zarr``: lazily, its
    pyramid in ``levels``) or a folder of 2D slices, with its voxel size.

    NaN and infinite pixels of a floating-point image are replaced by the lowest finite value
    of their slice, with a :class:`ReadWarning` naming the file and the count (see
    :mod:`napari_distill.core.io.repair`); the file itself is never changed.

    Raises
    ------
    ReadError
        The file is damaged or truncated, is not 2D/3D, or the folder's slices differ.
    FileNotFoundError
        ``path`` does not exist.
    """
    source = _existing(path)
    if ngff_kind(source) is not None:
        image = read_ngff(source)
    elif source.is_dir():
        _refuse_volumes(source)
        image = read_slices(image_files_in(source), LAZY_THRESHOLD_BYTES, source)
    elif source.suffix.lower() not in IMAGE_SUFFIXES:
        raise ReadError(f"{source}: napari-distill reads {', '.join(IMAGE_SUFFIXES)} files")
    else:
        image = read_2d_or_tiff(source, LAZY_THRESHOLD_BYTES)
    return repair_non_finite(image, LAZY_THRESHOLD_BYTES)


def _refuse_volumes(folder: Path) -> None:
    volumes = volumes_in(folder)
    if volumes:
        raise ReadError(
            f"{folder} holds {len(volumes)} 3D volumes, not the 2D slices of one stack: open "
            "the folder in napari (each volume becomes a layer), or read each file on its own "
            f"(napari-distill run --images '{folder}/*.tif' for a project of them)"
        )


def read_image_stack(paths: Sequence[PathLike]) -> ImageData:
    """Stack several 2D image files, in the order given, into one ``(Z, Y, X[, C])`` image."""
    files = [_existing(p) for p in paths]
    if not files:
        raise ReadError("no files given to stack")
    return repair_non_finite(
        read_slices(files, LAZY_THRESHOLD_BYTES, files[0]), LAZY_THRESHOLD_BYTES
    )


def read_labels(path: PathLike) -> ImageData:
    """Read a labels image (integers, 0 = unlabelled) into memory, writable for painting.

    Boolean masks become uint8. RGB or floating-point files, and negative label ids, raise
    :class:`ReadError`.
    """
    return as_labels(read_image(path))


def as_labels(image: ImageData) -> ImageData:
    """``image`` as labels, in memory and writable; see :func:`read_labels`."""
    dtype = _check_labels_dtype(image)
    data = np.array(image.data, dtype=np.uint8 if dtype.kind == "b" else dtype)
    _refuse_negative_ids(image.path, data)
    return ImageData(data=data, scale=image.scale, rgb=False, path=image.path, unit=image.unit)


def _check_labels_dtype(image: ImageData) -> np.dtype:
    """Raise :class:`ReadError` unless ``image`` holds one integer per pixel; its dtype."""
    dtype = np.dtype(image.data.dtype)
    if image.rgb:
        raise ReadError(f"{image.path} is an RGB image, not labels (one integer per pixel)")
    if dtype.kind not in "biu":
        raise ReadError(
            f"{image.path} holds {dtype} values; labels must be integers (0 = unlabelled)"
        )
    return dtype


def _refuse_negative_ids(path: Path, labels: np.ndarray) -> None:
    """Raise :class:`ReadError` naming the negative ids of ``labels`` and their counts.

    A model trained on them would predict labels that no unsigned TIFF can hold.
    """
    if labels.dtype.kind != "i" or labels.min(initial=0) >= 0:
        return
    values, counts = np.unique(labels[labels < 0], return_counts=True)
    found = ", ".join(f"{v} ({c} voxels)" for v, c in zip(values[:5], counts[:5], strict=True))
    more = f" and {len(values) - 5} more ids" if len(values) > 5 else ""
    raise ReadError(
        f"{path} holds negative label ids {found}{more}; labels must be 0 (unlabelled) or "
        f"positive class ids: relabel them before training"
    )


def read_probabilities(path: PathLike) -> ProbabilityData:
    """Read class probabilities written by :func:`write_probabilities` (lazily when large)."""
    source = _existing(path)
    meta = napari_distill_metadata(source)
    if meta.get("napari_distill") != "probabilities":
        raise ReadError(f"{source} is not a probability map written by napari-distill")
    tiff = open_tiff(source)
    try:
        spatial_ndim = tiff.series[0].ndim - 1
        scale, unit = tiff_scale(tiff, spatial_ndim)
        data = load_series(tiff, source, LAZY_THRESHOLD_BYTES)
    finally:
        tiff.close()
    class_ids = tuple(int(c) for c in meta.get("class_ids", range(data.shape[0])))
    if len(class_ids) != data.shape[0]:
        raise ReadError(
            f"{source} has {data.shape[0]} channels but {len(class_ids)} class ids in its metadata"
        )
    return ProbabilityData(data=data, scale=scale, class_ids=class_ids, path=source, unit=unit)


def file_kind(path: PathLike) -> str:
    """``"labels"`` or ``"probabilities"`` for files napari-distill wrote, else ``"image"``.

    Reads one TIFF header, no pixels; :func:`read_any` also recognises other software's labels.
    """
    kind = _written_kind(Path(path))
    return kind if kind in ("labels", "probabilities") else "image"


def _written_kind(path: Path) -> str | None:
    """The kind napari-distill recorded in a TIFF it wrote; None for other files."""
    if not path.is_file() or path.suffix.lower() not in (".tif", ".tiff"):
        return None
    return napari_distill_metadata(path).get("napari_distill")


def read_any(path: PathLike) -> tuple[str, ImageData | ProbabilityData]:
    """Read a file or folder as what it holds: ``("image" | "labels" | "probabilities", data)``.

    Files napari-distill wrote are what their metadata says. Any other integer image is
    labels when it looks like labels (:func:`~napari_distill.core.io.kinds.looks_like_labels`:
    0 the commonest value and flat non-zero patches, or a name such as ``*_mask.tif`` and
    either), read as :func:`read_labels` reads it; everything else is an image.
    """
    source = _existing(path)
    if ngff_kind(source) == "labels":  # kept lazy (dask), as large as the image may be
        labels = read_ngff(source)
        _check_labels_dtype(labels)
        return "labels", labels
    written = _written_kind(source)
    if written == "probabilities":
        return "probabilities", read_probabilities(source)
    image = read_image(source)
    if written == "labels" or (written is None and looks_like_labels(image)):
        return "labels", as_labels(image)
    return "image", image


def _check_spatial(array: Any, allowed: tuple[int, ...], what: str) -> None:
    if array.ndim not in allowed or 0 in array.shape:
        raise ValueError(
            f"{what} must be {' or '.join(f'{n}D' for n in allowed)} and non-empty, "
            f"got shape {tuple(array.shape)}"
        )


def write_labels(
    path: PathLike,
    labels: Any,
    scale: Sequence[float] | None = None,
    *,
    unit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write 2D or 3D labels (numpy, memmap or dask) to one TIFF; :func:`read_labels` reads it.

    A ``path`` ending in ``.zarr`` writes OME-Zarr instead: into that image's container as its
    ``labels/napari_distill`` group when it is an OME-Zarr image, else a new container (see
    :func:`~napari_distill.core.io.ngff_write.write_ngff_labels`).

    The dtype is the smallest of uint8 / uint16 / uint32 holding the largest label, so nothing
    is truncated. ``scale`` (one value per axis) and ``unit`` (``"micrometer"`` or None) are
    kept in the file. The file is written to a temporary name and renamed into place.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False.
    ValueError
        Labels are not integers, are negative, exceed uint32, or are not 2D/3D.
    """
    _check_spatial(labels, (2, 3), "labels")
    if Path(path).suffix.lower() == ZARR_SUFFIX:
        return write_ngff_labels(path, labels, scale, unit=unit, overwrite=overwrite)
    target = check_target(path, overwrite)
    return write_tiff_atomically(
        target,
        labels,
        labels_dtype(labels),
        axes="ZYX"[-labels.ndim :],
        scale=check_scale(scale, labels.ndim),
        unit=unit,
        kind="labels",
        overwrite=overwrite,
    )


def write_probabilities(
    path: PathLike,
    probabilities: Any,
    scale: Sequence[float] | None = None,
    *,
    class_ids: Sequence[int] | None = None,
    unit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``(C, Z, Y, X)`` or ``(C, Y, X)`` probabilities as float32 (float16 kept).

    Channel ``k`` is class ``class_ids[k]`` (default ``0 .. C-1``), stored in the file;
    ``scale`` has one value per spatial axis. :func:`read_probabilities` reads it back.
    """
    _check_spatial(probabilities, (3, 4), "probabilities (classes first)")
    ids = tuple(range(probabilities.shape[0])) if class_ids is None else tuple(class_ids)
    if len(ids) != probabilities.shape[0] or len(set(ids)) != len(ids):
        raise ValueError(
            f"class_ids {ids} must name each of the {probabilities.shape[0]} channels once"
        )
    target = check_target(path, overwrite)
    spatial_ndim = probabilities.ndim - 1
    return write_tiff_atomically(
        target,
        probabilities,
        probabilities_dtype(probabilities),
        axes="C" + "ZYX"[-spatial_ndim:],
        scale=check_scale(scale, spatial_ndim),
        unit=unit,
        kind="probabilities",
        overwrite=overwrite,
        extra={"class_ids": [int(c) for c in ids]},
    )


def write_image(
    path: PathLike,
    image: Any,
    scale: Sequence[float] | None = None,
    *,
    rgb: bool = False,
    unit: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a 2D/3D image (``rgb=True``: colours last), dtype kept; see :func:`read_image`."""
    spatial_ndim = image.ndim - (1 if rgb else 0)
    if spatial_ndim not in (2, 3) or 0 in image.shape or (rgb and image.shape[-1] not in (3, 4)):
        raise ValueError(
            f"image must be 2D or 3D{' with 3 or 4 colours last' if rgb else ''}, "
            f"got shape {tuple(image.shape)}"
        )
    dtype = np.dtype(image.dtype)
    if dtype.kind not in "biuf":
        raise ValueError(f"cannot write {dtype} pixels to a TIFF image")
    target = check_target(path, overwrite)
    return write_tiff_atomically(
        target,
        image,
        np.dtype(np.uint8) if dtype.kind == "b" else dtype,
        axes="ZYX"[-spatial_ndim:] + ("S" if rgb else ""),
        scale=check_scale(scale, spatial_ndim),
        unit=unit,
        kind="image",
        overwrite=overwrite,
    )
