"""Writing TIFF files atomically, with the voxel size kept where napari-distill reads it back.

Every file is one zlib-compressed TIFF whose ImageDescription is tifffile's JSON ("shaped")
description holding ``axes``, ``scale``, ``unit`` and ``napari_distill`` (the kind of file);
this works for every dtype, unlike ImageJ hyperstacks, which have no uint32. X and Y
resolution tags are written too, so other software sees the pixel size.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .common import LOCAL_SCHEDULER, MICROMETER, TIFF_SUFFIXES

logger = logging.getLogger(__name__)

_LABEL_DTYPES = (np.uint8, np.uint16, np.uint32)


def check_output_folder(folder: str | os.PathLike[str], *, create: bool = False) -> Path:
    """Raise unless files can be written into ``folder`` (made first, with its parents, when
    ``create``); return it.

    Writability is tested for real, by creating and deleting a hidden temporary file:
    ``os.access`` answers yes to root on a read-only folder, and knows nothing of read-only
    mounts or full quotas.

    Raises
    ------
    NotADirectoryError
        ``folder``, or one of its parents, is a file.
    FileNotFoundError
        ``folder`` does not exist (and ``create`` is False).
    PermissionError
        No file can be created in it.
    """
    directory = Path(folder)
    blocking = next((p for p in (directory, *directory.parents) if p.is_file()), None)
    if blocking is not None:
        raise NotADirectoryError(
            f"cannot write into {directory}: {blocking} is a file, not a folder"
        )
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PermissionError(
                f"cannot create the folder {directory}: {exc.strerror or exc}"
            ) from exc
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write into {directory}: the folder does not exist")
    try:
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".napari-distill-", suffix=".probe")
    except OSError as exc:
        raise PermissionError(
            f"cannot write into the folder {directory} ({exc.strerror or exc}): choose a "
            "folder you can write to"
        ) from exc
    os.close(handle)
    os.unlink(probe)
    return directory


def check_output_path(
    path: str | os.PathLike[str],
    overwrite: bool,
    suffixes: Sequence[str] | None = None,
) -> Path:
    """Check a file about to be written, before any work: a name ending in one of
    ``suffixes`` (any when None), a writable existing folder (:func:`check_output_folder`),
    not a folder itself, and not an existing file unless ``overwrite``.

    Raises
    ------
    ValueError
        Another suffix.
    FileExistsError
        The file exists and ``overwrite`` is False.
    IsADirectoryError, NotADirectoryError, FileNotFoundError, PermissionError
        It cannot be written there.
    """
    target = Path(path)
    if suffixes is not None and target.suffix.lower() not in suffixes:
        raise ValueError(
            f"cannot write {target}: napari-distill writes {' / '.join(suffixes)} files here"
        )
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a folder; give a file name")
    check_output_folder(target.parent)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; choose another file name, or pass overwrite=True "
            "(--overwrite) to replace it"
        )
    return target


def check_target(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Validate a TIFF output path (see :func:`check_output_path`)."""
    return check_output_path(path, overwrite, TIFF_SUFFIXES)


def check_scale(scale: Sequence[float] | None, spatial_ndim: int) -> tuple[float, ...]:
    """``scale`` as floats (1.0 each when None); one positive finite value per spatial axis."""
    if scale is None:
        return (1.0,) * spatial_ndim
    values = tuple(float(v) for v in scale)
    if len(values) != spatial_ndim or not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(
            f"scale must hold {spatial_ndim} positive numbers (one per spatial axis), "
            f"got {tuple(scale)}"
        )
    return values


def _pages(array: Any, page_ndim: int, dtype: np.dtype) -> Iterator[np.ndarray]:
    """2D planes of ``array`` one at a time, so a dask or memory-mapped array is never whole."""
    lazy = hasattr(array, "compute")  # dask: read here, by threads (see LOCAL_SCHEDULER)
    for index in np.ndindex(*array.shape[: array.ndim - page_ndim]):
        page = array[index].compute(scheduler=LOCAL_SCHEDULER) if lazy else array[index]
        yield np.asarray(page).astype(dtype, copy=False)


def write_tiff_atomically(
    path: Path,
    array: Any,
    dtype: np.dtype,
    *,
    axes: str,
    scale: tuple[float, ...],
    unit: str | None,
    kind: str,
    overwrite: bool,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``array`` (numpy, memmap or dask) to ``path`` via a temporary file and a rename.

    The temporary file sits in the same folder (so the rename is atomic) and is removed when
    writing fails, e.g. on a full disk: ``path`` is either the old file or the complete new
    one, never half written.
    """
    rgb = axes.endswith("S")
    metadata = {"axes": axes, "scale": list(scale), "unit": unit, "napari_distill": kind}
    metadata.update(extra or {})
    y_size, x_size = scale[-2:]
    if unit == MICROMETER:  # centimetres: the finest unit baseline TIFF readers know
        resolution, resolution_unit = (1e4 / x_size, 1e4 / y_size), "CENTIMETER"
    else:
        resolution, resolution_unit = (1.0 / x_size, 1.0 / y_size), "NONE"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    try:
        tifffile.imwrite(
            temporary,
            _pages(array, 3 if rgb else 2, dtype),
            shape=tuple(array.shape),
            dtype=dtype,
            photometric="rgb" if rgb else "minisblack",
            compression="zlib",
            metadata=metadata,
            resolution=resolution,
            resolutionunit=resolution_unit,
        )
        if path.exists() and not overwrite:  # it appeared while we were writing
            raise FileExistsError(f"{path} appeared while writing; nothing was replaced")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("wrote %s %s %s to %s", kind, tuple(array.shape), dtype, path)
    return path


def _min_max(array: Any) -> tuple[int, int]:
    if hasattr(array, "compute"):  # dask: both reductions in one pass over the chunks
        import dask

        low, high = dask.compute(array.min(), array.max(), scheduler=LOCAL_SCHEDULER)
    else:
        low, high = array.min(), array.max()
    return int(low), int(high)


def labels_dtype(labels: Any) -> np.dtype:
    """The smallest of uint8 / uint16 / uint32 that holds every label of ``labels``."""
    dtype = np.dtype(labels.dtype)
    if dtype.kind not in "biu":
        raise ValueError(f"labels must be integers (0 = unlabelled), got {dtype} values")
    if dtype.kind == "b" or labels.size == 0:
        return np.dtype(np.uint8)
    low, high = _min_max(labels)
    if low < 0:
        raise ValueError(f"labels must not be negative, found {low}")
    for candidate in _LABEL_DTYPES:
        if high <= np.iinfo(candidate).max:
            return np.dtype(candidate)
    raise ValueError(f"label {high} is too large for a uint32 TIFF (at most {2**32 - 1})")


def probabilities_dtype(probabilities: Any) -> np.dtype:
    """float16 stays float16; every other float is written as float32."""
    dtype = np.dtype(probabilities.dtype)
    if dtype.kind != "f":
        raise ValueError(f"probabilities must be floating point, got {dtype}")
    return dtype if dtype == np.float16 else np.dtype(np.float32)
