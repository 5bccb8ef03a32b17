"""Reading 2D images (PNG, JPEG, BMP, 2D TIFF) and stacking folders or lists of 2D slices."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .common import (
    IMAGE_SUFFIXES,
    TIFF_SUFFIXES,
    ImageData,
    ReadError,
    check_pixel_dtype,
    natural_sort_key,
    suffix_of,
)
from .tiff import read_tiff, read_tiff_2d_header

logger = logging.getLogger(__name__)

_NO_LAZINESS = 2**62  # slices are read whole; laziness is decided for the stack


def image_files_in(folder: Path) -> list[Path]:
    """Image files directly inside ``folder`` (hidden files skipped), in natural order."""
    files = [
        entry
        for entry in folder.iterdir()
        if entry.is_file()
        and not entry.name.startswith(".")  # e.g. macOS "._slice.tif" resource forks
        and entry.suffix.lower() in IMAGE_SUFFIXES
    ]
    return sorted(files, key=natural_sort_key)


def _plain_layout(shape: tuple[int, ...], dtype: np.dtype) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype :func:`read_plain_2d` returns for a file imageio reports as given."""
    if len(shape) == 3 and shape[-1] in (1, 2):  # grey, or grey + alpha: keep the grey
        shape = shape[:2]
    return shape, np.dtype(np.uint8) if np.dtype(dtype) == bool else np.dtype(dtype)


def read_plain_2d(path: Path) -> ImageData:
    """Read a PNG, JPEG or BMP image as ``(Y, X)`` or ``(Y, X, 3|4)``."""
    import imageio.v3 as iio

    try:
        image = np.asarray(iio.imread(path, index=0))
    except (OSError, ValueError) as exc:
        raise ReadError(f"{path} could not be read as an image: {exc}") from exc
    check_pixel_dtype(path, image.dtype)
    if image.ndim == 3 and image.shape[-1] in (1, 2):
        image = image[..., 0]
    if image.dtype == bool:  # 1-bit images: napari shows integers more reliably
        image = image.astype(np.uint8)
    rgb = image.ndim == 3 and image.shape[-1] in (3, 4)
    if image.ndim != 2 and not rgb:
        raise ReadError(f"{path} is not a 2D greyscale or RGB image (shape {image.shape})")
    return ImageData(data=image, scale=(1.0, 1.0), rgb=rgb, path=path, unit=None)


def read_2d_or_tiff(path: Path, lazy_threshold: int) -> ImageData:
    """Read any supported single file: TIFF (2D or 3D) or a plain 2D image."""
    if suffix_of(path) in TIFF_SUFFIXES:
        return read_tiff(path, lazy_threshold)
    return read_plain_2d(path)


def _header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and RGB flag of a 2D file without decoding its pixels (where possible)."""
    if suffix_of(path) in TIFF_SUFFIXES:
        return read_tiff_2d_header(path)
    import imageio.v3 as iio

    try:
        props = iio.improps(path, index=0)
    except (OSError, ValueError) as exc:
        raise ReadError(f"{path} could not be read as an image: {exc}") from exc
    shape, dtype = _plain_layout(tuple(props.shape), props.dtype)
    return shape, dtype, len(shape) == 3


def _check_slice(
    path: Path, header: tuple[Any, ...], first: Path, expected: tuple[Any, ...]
) -> None:
    """Raise unless ``header`` (shape, dtype, rgb) is a 2D image like the first slice's."""
    shape, dtype, rgb = header
    if len(shape) - (1 if rgb else 0) != 2:
        raise ReadError(
            f"{path} is not a 2D image (shape {shape}); a stack of slices takes 2D images only"
        )
    if (shape, dtype) != expected:
        expected_shape, expected_dtype = expected
        raise ReadError(
            f"{path} is {shape} {dtype}, but {first.name} is {expected_shape} {expected_dtype}: "
            f"all slices of a stack must have the same shape and pixel type"
        )


def _read_slice(path: Path, first: Path, expected: tuple[Any, ...]) -> np.ndarray:
    image = read_2d_or_tiff(path, _NO_LAZINESS)
    data = np.array(image.data)  # a copy: no file stays memory-mapped per slice
    _check_slice(path, (data.shape, data.dtype, image.rgb), first, expected)
    return data


def _check_one_format(paths: Sequence[Path], source: Path) -> None:
    formats = sorted({suffix_of(p) for p in paths})
    if len(formats) > 1:
        raise ReadError(
            f"{source} mixes {', '.join(formats)} files; a stack of slices must be one format "
            f"(move the other files out)"
        )


def read_slices(paths: Sequence[Path], lazy_threshold: int, source: Path) -> ImageData:
    """Stack 2D images (in the given order) into ``(Z, Y, X)`` or ``(Z, Y, X, C)``.

    Every slice must have the first slice's shape and dtype; the error names the first file
    that does not. Stacks larger than ``lazy_threshold`` bytes become a dask array of delayed
    reads (shapes are checked from the file headers first). The voxel size in y and x comes
    from the first slice; z is 1.0 (slices do not record their spacing).
    """
    if not paths:
        raise ReadError(f"{source} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    _check_one_format(paths, source)
    first = read_2d_or_tiff(paths[0], _NO_LAZINESS)
    first_data = np.array(first.data)
    expected = (first_data.shape, first_data.dtype)
    _check_slice(paths[0], (*expected, first.rgb), paths[0], expected)
    total_bytes = first_data.nbytes * len(paths)
    if total_bytes > lazy_threshold:
        import dask
        import dask.array as da

        for path in paths[1:]:
            _check_slice(path, _header(path), paths[0], expected)
        planes = [da.from_array(first_data, chunks=first_data.shape)] + [
            da.from_delayed(dask.delayed(_read_slice)(p, paths[0], expected), *expected)
            for p in paths[1:]
        ]
        data: Any = da.stack(planes)
    else:
        data = np.stack([first_data] + [_read_slice(p, paths[0], expected) for p in paths[1:]])
    if first.unit is not None:
        logger.warning("%s: slice spacing is unknown; z scale set to 1.0", source)
    return ImageData(
        data=data, scale=(1.0, *first.scale), rgb=first.rgb, path=source, unit=first.unit
    )
