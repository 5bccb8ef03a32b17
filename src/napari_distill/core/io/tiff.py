"""Reading TIFF files: structure checks, voxel size from metadata, lazy loading.

Voxel size comes from, in this order: the JSON description napari-distill writes, OME-XML
(``PhysicalSizeZ/Y/X``), ImageJ metadata (``spacing`` + ``XResolution``/``YResolution``) and
plain TIFF resolution tags (with ``ResolutionUnit``). The first source found is used whole.
"""

from __future__ import annotations

import json
import logging
import math
import struct
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .common import (
    MICROMETER,
    ImageData,
    ReadError,
    check_pixel_dtype,
    check_spatial_layout,
    micrometres_per,
    native,
)

logger = logging.getLogger(__name__)

# Errors tifffile only logs (and then reads on with fewer pages) that mean the file is cut
# short or damaged; other logged errors are fallbacks to a plainer reading and stay harmless.
_CORRUPTION_HINTS = ("offset", "corrupted", "reshape", "truncated")
_PARSE_ERRORS = (tifffile.TiffFileError, OSError, ValueError, struct.error, EOFError)

# Micrometres per unit of the TIFF ResolutionUnit tag (4 and 5 are tifffile extensions).
_RESOLUTION_UNIT_MICROMETRES = {2: 25_400.0, 3: 1e4, 4: 1e3, 5: 1.0}

PhysicalSizes = dict[str, tuple[float, "float | None"]]  # axis -> (size, micrometres per unit)


class _Collector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect the errors tifffile logs while it parses a file."""
    collector = _Collector()
    tiff_logger = logging.getLogger("tifffile")
    tiff_logger.addHandler(collector)
    try:
        yield collector.messages
    finally:
        tiff_logger.removeHandler(collector)


def open_tiff(path: Path) -> tifffile.TiffFile:
    """Open ``path`` and check that its first series is complete; raise :class:`ReadError`."""
    with _tifffile_errors() as logged:
        try:
            tiff = tifffile.TiffFile(path)
        except _PARSE_ERRORS as exc:
            raise ReadError(f"{path} is not a readable TIFF file: {exc}") from exc
        try:
            series = tiff.series  # parsed here so that its logged errors are collected
            len(tiff.pages)
        except _PARSE_ERRORS as exc:
            tiff.close()
            raise ReadError(f"{path} is a damaged TIFF file: {exc}") from exc
    try:
        problems = [m for m in logged if any(hint in m.lower() for hint in _CORRUPTION_HINTS)]
        if problems:
            raise ReadError(
                f"{path} looks truncated or corrupted (tifffile: {problems[0]}); copy or "
                f"export it again"
            )
        if not series:
            raise ReadError(f"{path} is a TIFF file without an image")
        _check_data_within_file(tiff, path)
    except ReadError:
        tiff.close()
        raise
    return tiff


def _check_data_within_file(tiff: tifffile.TiffFile, path: Path) -> None:
    """Raise when image data would lie past the end of the file (a truncated download/copy)."""
    size = tiff.filehandle.size
    series = tiff.series[0]
    if series.dataoffset is not None and series.dataoffset + series.nbytes > size:
        raise ReadError(
            f"{path} is truncated: the image needs {series.dataoffset + series.nbytes} bytes, "
            f"the file has {size}"
        )
    for index, page in enumerate(tiff.pages):
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
        if ends and max(ends) > size:
            raise ReadError(
                f"{path} is truncated: page {index} ends at byte {max(ends)}, "
                f"the file has {size} bytes"
            )


def arrange_axes(path: Path, shape: tuple[int, ...], axes: str) -> tuple[tuple[int, ...], bool]:
    """The transpose putting colour samples last, and whether the image is RGB(A).

    tifffile names colour samples ``S``; planar RGB (``SYX``) has them first.
    """
    order = list(range(len(shape)))
    samples = [index for index, axis in enumerate(axes.upper()) if axis == "S"]
    rgb = False
    if samples:
        axis = samples[0]
        if len(samples) > 1 or shape[axis] not in (3, 4):
            raise ReadError(
                f"{path} has {shape[axis]} samples per pixel (axes {axes}, shape {shape}); "
                f"napari-distill reads greyscale, RGB or RGBA images"
            )
        rgb = True
        order.remove(axis)
        order.append(axis)
    check_spatial_layout(path, shape, rgb, axes)
    return tuple(order), rgb


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _own_sizes(tiff: tifffile.TiffFile, spatial_ndim: int) -> PhysicalSizes:
    """Voxel size from the JSON description written by napari-distill (exact floats)."""
    if not tiff.is_shaped or not tiff.shaped_metadata:
        return {}
    meta = tiff.shaped_metadata[0]
    scale = meta.get("scale")
    if not isinstance(scale, list) or len(scale) < spatial_ndim:
        return {}
    factor = 1.0 if meta.get("unit") == MICROMETER else None
    sizes: PhysicalSizes = {}
    for axis, value in zip("ZYX"[-spatial_ndim:], scale[-spatial_ndim:], strict=True):
        size = _positive(value)
        if size is not None:
            sizes[axis] = (size, factor)
    return sizes


def _ome_sizes(tiff: tifffile.TiffFile) -> PhysicalSizes:
    if not tiff.is_ome or not tiff.ome_metadata:
        return {}
    try:
        root = ElementTree.fromstring(tiff.ome_metadata)
    except ElementTree.ParseError as exc:
        logger.warning("ignoring unreadable OME-XML in %s: %s", tiff.filename, exc)
        return {}
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}
    sizes: PhysicalSizes = {}
    for axis in "ZYX":
        size = _positive(pixels.get(f"PhysicalSize{axis}"))
        if size is not None:  # the OME schema's default unit is the micrometre
            sizes[axis] = (size, micrometres_per(pixels.get(f"PhysicalSize{axis}Unit", "um")))
    return sizes


def _pixel_sizes_from_tags(page: Any, factor: float | None) -> PhysicalSizes:
    x_resolution, y_resolution = page.resolution
    sizes: PhysicalSizes = {}
    for axis, resolution in (("X", x_resolution), ("Y", y_resolution)):
        pixels_per_unit = _positive(resolution)
        if pixels_per_unit is not None:
            sizes[axis] = (1.0 / pixels_per_unit, factor)
    return sizes


def _imagej_sizes(tiff: tifffile.TiffFile) -> PhysicalSizes:
    meta = tiff.imagej_metadata
    if not meta:
        return {}
    factor = micrometres_per(meta.get("unit"))
    sizes = _pixel_sizes_from_tags(tiff.pages[0], factor)
    spacing = _positive(meta.get("spacing"))
    if spacing is not None:
        sizes["Z"] = (spacing, factor)
    return sizes


def _tag_sizes(tiff: tifffile.TiffFile) -> PhysicalSizes:
    page = tiff.pages[0]
    if "XResolution" not in page.tags:
        return {}
    # TIFF's default ResolutionUnit is the inch; 1 means "no absolute unit"
    return _pixel_sizes_from_tags(page, _RESOLUTION_UNIT_MICROMETRES.get(int(page.resolutionunit)))


def tiff_scale(tiff: tifffile.TiffFile, spatial_ndim: int) -> tuple[tuple[float, ...], str | None]:
    """Voxel size ``(z, y, x)`` or ``(y, x)`` in micrometres when the unit is known, else as is."""
    sizes: PhysicalSizes = {}
    for source in (
        lambda: _own_sizes(tiff, spatial_ndim),
        lambda: _ome_sizes(tiff),
        lambda: _imagej_sizes(tiff),
        lambda: _tag_sizes(tiff),
    ):
        sizes = source()
        if sizes:
            break
    axes = "ZYX"[-spatial_ndim:]
    scale = []
    converted = []
    for axis in axes:
        size, factor = sizes.get(axis, (1.0, None))
        converted.append(factor is not None)
        scale.append(size * factor if factor is not None else size)
    if any(converted) and not all(converted):
        logger.warning(
            "%s: voxel size known in micrometres on some axes only (%s); the others are 1.0",
            tiff.filename,
            ", ".join(a for a, known in zip(axes, converted, strict=True) if known),
        )
    return tuple(scale), (MICROMETER if any(converted) else None)


def _zarr_usable() -> bool:
    """Whether tifffile's ``aszarr`` stores can be opened (tifffile >= 2025 needs zarr >= 3)."""
    try:
        import zarr
    except ImportError:
        return False
    return int(str(zarr.__version__).split(".")[0]) >= 3


def _dask_from_zarr(path: Path) -> Any:
    import dask.array as da
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0, level=0)  # owns its file handle
    return da.from_zarr(zarr.open(store, mode="r"))


def _dask_from_pages(path: Path, series: Any) -> Any | None:
    """A dask array reading one TIFF page per chunk (used where zarr >= 3 is missing)."""
    import dask
    import dask.array as da

    pages = list(series.pages)
    page_shape = tuple(series.keyframe.shape)
    if not pages or any(p is None for p in pages):
        return None
    if len(pages) * math.prod(page_shape) != math.prod(series.shape):
        return None
    tiff = tifffile.TiffFile(path)  # kept open for as long as the array lives
    lock = threading.Lock()  # one file handle: reads must not interleave their seeks

    def read_page(index: int) -> np.ndarray:
        with lock:
            return tiff.pages[index].asarray()

    planes = [
        da.from_delayed(dask.delayed(read_page)(page.index), page_shape, series.dtype)
        for page in pages
    ]
    return da.stack(planes).reshape(series.shape)


def _load_lazily(path: Path, series: Any) -> Any:
    if _zarr_usable():
        try:
            return _dask_from_zarr(path)
        except (ImportError, TypeError, AttributeError) as exc:  # a tifffile built for zarr 2
            logger.info("%s: tifffile's zarr store failed (%s); reading page by page", path, exc)
    data = _dask_from_pages(path, series)
    if data is None:
        logger.warning("%s: cannot be read lazily without zarr >= 3; reading it into memory", path)
        return series.asarray()
    return data


def load_series(tiff: tifffile.TiffFile, path: Path, lazy_threshold: int) -> Any:
    """The first series' pixels: memory-mapped, dask (above ``lazy_threshold``) or in memory.

    Uncompressed contiguous data is memory-mapped read-only; compressed or scattered data
    larger than ``lazy_threshold`` bytes becomes a dask array; the rest is read into memory.
    Byte-swapped files are converted to the machine's byte order.
    """
    series = tiff.series[0]
    shape = tuple(series.shape)
    dtype = np.dtype(series.dtype).newbyteorder(tiff.byteorder)  # as stored on disk
    try:
        if series.dataoffset is not None and dtype.isnative:
            # what tifffile.memmap does, without parsing the file a second time
            data: Any = np.memmap(
                path, dtype=dtype, mode="r", offset=series.dataoffset, shape=shape
            )
        elif series.nbytes > lazy_threshold:
            data = _load_lazily(path, series)
        else:
            data = series.asarray()
    except _PARSE_ERRORS as exc:
        raise ReadError(f"{path} could not be read: {exc}") from exc
    return data if np.dtype(data.dtype).isnative else data.astype(native(data.dtype))


def read_tiff(path: Path, lazy_threshold: int) -> ImageData:
    """Read a 2D image or 3D stack (greyscale or RGB) from a TIFF file, see :func:`load_series`."""
    tiff = open_tiff(path)
    try:
        series = tiff.series[0]
        shape = tuple(series.shape)
        check_pixel_dtype(path, series.dtype)
        order, rgb = arrange_axes(path, shape, series.axes)
        scale, unit = tiff_scale(tiff, len(shape) - (1 if rgb else 0))
        data = load_series(tiff, path, lazy_threshold)
    finally:
        tiff.close()
    if order != tuple(range(len(shape))):
        data = data.transpose(order)
    return ImageData(data=data, scale=scale, rgb=rgb, path=path, unit=unit)


def read_tiff_2d_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape (colour last), dtype and RGB flag of a TIFF's first series, without its pixels."""
    tiff = open_tiff(path)
    try:
        series = tiff.series[0]
        shape = tuple(series.shape)
        order, rgb = arrange_axes(path, shape, series.axes)
        return tuple(shape[i] for i in order), native(series.dtype), rgb
    finally:
        tiff.close()


def napari_distill_metadata(path: Path) -> dict[str, Any]:
    """The JSON description napari-distill writes (``{}`` for other files); reads one IFD."""
    try:
        with tifffile.TiffFile(path) as tiff:
            description = tiff.pages[0].description
    except (*_PARSE_ERRORS, IndexError):  # IndexError: a TIFF without pages
        return {}
    if not description.startswith("{"):
        return {}
    try:
        meta = json.loads(description)
    except json.JSONDecodeError:
        return {}
    return meta if isinstance(meta, dict) and "napari_distill" in meta else {}
