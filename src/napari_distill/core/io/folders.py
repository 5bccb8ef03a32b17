"""Folders of 3D volumes (many fish, one file each), told apart from folders of 2D slices.

A folder of 2D images is one stack (:func:`~napari_distill.core.io.slices.read_slices`); a
folder of 3D TIFF stacks is many images, each opened on its own (issue 26: many volumes, one
project). :func:`volumes_in` decides from the files' headers alone (no pixel is read) and
refuses a folder that mixes both, naming a file of each kind. :func:`read_volume` opens one
volume lazily whatever its size: memory-mapped when the file is uncompressed and contiguous,
else a dask array of its pages, so twenty volumes open in the time it takes to read their
headers and only the slices shown are read.

Files named ``<stem>_labels.tif`` beside ``<stem>.tif`` are the volumes' painted labels
(:func:`is_labels_name`, the convention of ``napari-distill run --labels-dir``).
"""

from __future__ import annotations

from pathlib import Path

import tifffile

from .common import TIFF_SUFFIXES, ImageData, ReadError, suffix_of
from .repair import repair_non_finite
from .slices import image_files_in
from .tiff import arrange_axes, read_tiff

#: A volume's labels file: ``<stem>_labels.tif`` (as ``napari-distill run`` matches them).
LABELS_NAME_SUFFIX = "_labels"
_ALWAYS_LAZY = 0  # compressed volumes become dask arrays whatever their size


def _spatial_ndim(path: Path) -> int:
    """2 or 3 (or more: refused when read) from the file's first series; 2 for PNG, JPEG, BMP.

    Only the header and the series' description are read: the whole file's check (every page
    within the file) waits until the volume is read, so that listing twenty volumes is quick.
    """
    if suffix_of(path) not in TIFF_SUFFIXES:
        return 2
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            shape, axes = tuple(series.shape), series.axes
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as error:
        raise ReadError(f"{path} could not be read as a TIFF: {error}") from error
    _order, rgb = arrange_axes(path, shape, axes)
    return len(shape) - (1 if rgb else 0)


def volumes_in(folder: str | Path) -> list[Path] | None:
    """The 3D volumes directly inside ``folder`` in natural order, or None when it holds 2D
    slices (one stack) or no image at all.

    Raises
    ------
    ReadError
        The folder mixes 3D volumes and 2D images (one of each named), or a header is damaged.
    """
    source = Path(folder)
    if not source.is_dir():
        return None
    files = image_files_in(source)
    if not files:
        return None
    dims = {path: _spatial_ndim(path) for path in files}
    volumes = [path for path, ndim in dims.items() if ndim >= 3]
    if not volumes:
        return None
    flat = [path for path, ndim in dims.items() if ndim < 3]
    if flat:
        raise ReadError(
            f"{source} mixes 3D volumes ({volumes[0].name}, {len(volumes)} in all) and 2D "
            f"images ({flat[0].name}, {len(flat)} in all): a folder is either one stack of 2D "
            "slices or many volumes; move one kind into another folder"
        )
    return volumes


def is_labels_name(path: Path) -> bool:
    """Whether ``path`` is named as a volume's labels (``<stem>_labels.tif``)."""
    name = path.name
    for suffix in (*TIFF_SUFFIXES, ".ome"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name.lower().endswith(LABELS_NAME_SUFFIX)


def read_volume(path: str | Path) -> ImageData:
    """One 3D TIFF volume, lazily: memory-mapped, or dask when compressed (see the module).

    Raises
    ------
    ReadError
        The file is damaged, or not a 3D stack.
    """
    source = Path(path)
    image = read_tiff(source, _ALWAYS_LAZY)
    if image.spatial_ndim != 3:
        raise ReadError(f"{source} is not a 3D stack (shape {tuple(image.data.shape)})")
    return repair_non_finite(image, _ALWAYS_LAZY)
