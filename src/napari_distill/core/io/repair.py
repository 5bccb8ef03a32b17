"""NaN and infinite pixels of floating-point images, replaced once, where images are read.

One NaN poisons everything downstream: the robust-percentile normalisation becomes NaN, so
training diverges ("lower the learning rate") and prediction labels every pixel background.
Reconstructions and registrations write NaN where they have no data (outside the field of
view, past a registered image's border), so such pixels are treated as the darkest background:
each non-finite pixel (NaN, +Inf or -Inf) becomes the lowest finite value of its slice, or of
the whole image when its slice has none. A :class:`ReadWarning` names the file and the count
(the command line prints it as one line; napari shows it as a notification).

Data on disk is never changed: an in-memory array is repaired in place (it is a fresh copy
read from the file), a small memory-mapped one is copied first, and a large memory-mapped or
dask one stays lazy (``map_blocks``, each chunk repaired when it is read). Lazy data is read
once, chunk by chunk, to count the bad pixels and find each slice's minimum in the same pass.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from .common import LOCAL_SCHEDULER, ImageData, ReadError


class ReadWarning(UserWarning):
    """Something napari-distill changed in an image while reading it; the message says what."""


# Each file's warning is shown every time it is read, not once per session (Python's default).
warnings.filterwarnings("always", category=ReadWarning)


def _is_lazy(data: Any) -> bool:
    return hasattr(data, "compute") and hasattr(data, "map_blocks")


def repair_non_finite(image: ImageData, lazy_threshold: int) -> ImageData:
    """``image`` with its non-finite pixels replaced (see the module's docstring).

    Integer images are returned as they are. A slice is one index of the first axis of a
    stack, or the whole of a 2D image (all colours of an RGB pixel together).

    Raises
    ------
    ReadError
        The image holds no finite value at all.
    """
    data = image.data
    if np.dtype(data.dtype).kind != "f":
        return image
    stack = data if image.spatial_ndim == 3 else data[np.newaxis]
    lazy = _is_lazy(data) or (isinstance(data, np.memmap) and data.nbytes > lazy_threshold)
    if lazy:
        bad, low = _lazy_slice_stats(stack)
    else:
        if isinstance(data, np.memmap) or not data.flags.writeable:
            data = np.array(data)  # copy-on-repair: never write into the file
            stack = data if image.spatial_ndim == 3 else data[np.newaxis]
        bad, low = _slice_stats(stack)
    total = int(bad.sum())
    if total == 0:
        return image
    fill = _fill_values(image, low)
    if lazy:
        repaired = _repair_lazily(stack, fill)
        data = repaired if image.spatial_ndim == 3 else repaired[0]
    else:
        for index in np.flatnonzero(bad):
            plane = stack[index]
            plane[~np.isfinite(plane)] = fill[index]
    warnings.warn(_message(image, total, int(np.count_nonzero(bad)), len(bad)), ReadWarning,
                  stacklevel=3)  # fmt: skip
    return dataclasses.replace(image, data=data)


def _slice_stats(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per slice: the count of non-finite pixels and the lowest finite value (+inf if none)."""
    bad = np.zeros(len(stack), np.int64)
    low = np.full(len(stack), np.inf)
    for index, plane in enumerate(stack):
        finite = np.isfinite(plane)
        bad[index] = finite.size - np.count_nonzero(finite)
        low[index] = np.min(plane, where=finite, initial=np.inf)
    return bad, low


def _lazy_slice_stats(stack: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_slice_stats` of a dask array or a large memory map, in one pass over it."""
    import dask
    import dask.array as da

    if not _is_lazy(stack):  # a memory map: one slice per chunk, read a few at a time
        stack = da.from_array(stack, chunks=(1, *stack.shape[1:]))
    finite = da.isfinite(stack)
    axes = tuple(range(1, stack.ndim))
    bad = (~finite).sum(axis=axes)
    low = da.where(finite, stack, np.inf).min(axis=axes)
    # both from the same chunks, read once, in this process (LOCAL_SCHEDULER)
    bad, low = dask.compute(bad, low, scheduler=LOCAL_SCHEDULER)
    return np.asarray(bad, np.int64), np.asarray(low, np.float64)


def _fill_values(image: ImageData, low: np.ndarray) -> np.ndarray:
    """Each slice's replacement: its lowest finite value, else the image's."""
    finite = np.isfinite(low)
    if not finite.any():
        raise ReadError(
            f"{image.path} holds no finite value (every pixel is NaN or infinite): export "
            "the image again"
        )
    return np.where(finite, low, low[finite].min()).astype(image.data.dtype)


def _repair_lazily(stack: Any, fill: np.ndarray) -> Any:
    import dask.array as da

    if not _is_lazy(stack):
        stack = da.from_array(stack, chunks=(1, *stack.shape[1:]))

    def repair_block(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        start, stop = block_info[0]["array-location"][0]
        values = fill[start:stop].reshape((-1,) + (1,) * (block.ndim - 1))
        return np.where(np.isfinite(block), block, values)

    return stack.map_blocks(repair_block, dtype=stack.dtype)


def _message(image: ImageData, total: int, slices: int, n_slices: int) -> str:
    share = 100.0 * total / max(1, int(np.prod(image.data.shape)))
    where = f"in {slices} of {n_slices} slices" if image.spatial_ndim == 3 else "in the image"
    return (
        f"{image.path} holds {total} NaN or infinite pixels ({share:.2g}% of the image, {where}); "
        f"each was replaced by the lowest finite value of its slice (read as background)"
    )
