"""Shared pieces of :mod:`napari_distill.core.io.read`: result types, the read error, units, order.

Import these from :mod:`napari_distill.core.io.read`; this module exists only to keep each I/O
module short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MICROMETER = "micrometer"

TIFF_SUFFIXES = (".tif", ".tiff")
PLAIN_2D_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PLAIN_2D_SUFFIXES

# Micrometres per unit, for the spellings ImageJ, OME and TIFF tags use.
_MICROMETRES_PER_UNIT = {
    "m": 1e6,
    "meter": 1e6,
    "cm": 1e4,
    "centimeter": 1e4,
    "mm": 1e3,
    "millimeter": 1e3,
    "um": 1.0,
    "\u00b5m": 1.0,  # micro sign
    "\u03bcm": 1.0,  # Greek mu
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "\u00e5": 1e-4,  # angstrom sign, lower-cased
    "angstrom": 1e-4,
    "in": 25_400.0,
    "inch": 25_400.0,
}


# The dask scheduler of the reads' and writes' own computations: this process's threads,
# whatever Dask client the user (or a batch run) made the default: a file is read where it lies,
# never sent to a cluster whose workers may not see it.
LOCAL_SCHEDULER = "threads"


class ReadError(ValueError):
    """A file napari-distill claims (by its name) but cannot read; the message names it."""


@dataclass(frozen=True)
class ImageData:
    """An image or stack read from disk, with its voxel size.

    Attributes
    ----------
    data:
        ``np.ndarray``, ``np.memmap`` or dask array shaped ``(Z, Y, X)``, ``(Y, X)``,
        ``(Y, X, C)`` or ``(Z, Y, X, C)`` with ``C`` in (3, 4) colour channels.
    scale:
        Voxel size, one value per spatial axis (``(z, y, x)`` or ``(y, x)``); 1.0 where unknown.
    rgb:
        Whether the last axis holds colour channels.
    path:
        The file or folder read.
    unit:
        ``"micrometer"`` when the file states a physical unit, else None.
    levels:
        Coarser resolution levels of ``data`` (dask arrays, the same axes), when the file
        holds a pyramid (OME-Zarr); empty otherwise.
    """

    data: Any = field(repr=False)  # a stack's repr would print its pixels
    scale: tuple[float, ...]
    rgb: bool
    path: Path
    unit: str | None = None
    levels: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def spatial_ndim(self) -> int:
        """2 for an image, 3 for a stack."""
        return len(self.scale)


@dataclass(frozen=True)
class ProbabilityData:
    """Class probabilities written by :func:`napari_distill.core.io.write_probabilities`.

    ``data`` is ``(C, Z, Y, X)`` or ``(C, Y, X)``; channel ``k`` is class ``class_ids[k]``;
    ``scale`` has one value per spatial axis (the channel axis has none).
    """

    data: Any = field(repr=False)
    scale: tuple[float, ...]
    class_ids: tuple[int, ...]
    path: Path
    unit: str | None = None


def micrometres_per(unit: str | None) -> float | None:
    """Micrometres in one ``unit`` (``"mm"``, ``"\\u00b5m"``, ``"micron"``...); None if unknown."""
    if unit is None:
        return None
    text = str(unit).strip()
    if "\\u" in text:  # ImageJ writes the micro sign escaped, e.g. "\\u00B5m"
        text = text.encode("ascii", "backslashreplace").decode("unicode_escape")
    return _MICROMETRES_PER_UNIT.get(text.lower())


def natural_sort_key(path: Path) -> tuple[Any, ...]:
    """Sort key putting ``slice_2`` before ``slice_10`` (digit runs compare as numbers)."""
    # re.split with a capturing group alternates text and digit runs, so types always line up.
    parts = re.split(r"(\d+)", path.name.lower())
    return tuple(int(part) if index % 2 else part for index, part in enumerate(parts))


def suffix_of(path: Path) -> str:
    """Lower-case suffix; ``.jpeg`` counts as ``.jpg`` and ``.tiff`` as ``.tif``."""
    suffix = path.suffix.lower()
    return {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)


def check_spatial_layout(path: Path, shape: tuple[int, ...], rgb: bool, axes: str = "") -> None:
    """Raise :class:`ReadError` unless ``shape`` is a 2D image or a 3D stack (plus colour)."""
    spatial = len(shape) - (1 if rgb else 0)
    if spatial in (2, 3):
        return
    described = f"axes {axes}, " if axes else ""
    raise ReadError(
        f"{path} holds a {spatial}D image ({described}shape {tuple(shape)}); napari-distill "
        f"reads 2D images and 3D stacks: save one channel / time point as a 3D stack first"
    )


def check_pixel_dtype(path: Path, dtype: np.dtype) -> None:
    """Raise :class:`ReadError` for pixel types that are not numbers napari can show."""
    if np.dtype(dtype).kind not in "biuf":
        raise ReadError(f"{path} holds {np.dtype(dtype)} pixels, not an intensity image")


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in the machine's byte order (torch and napari want native arrays)."""
    return np.dtype(dtype).newbyteorder("=")
