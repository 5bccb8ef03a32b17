"""A project's volumes as one stack of slices on disk, so that the single-stack core trains on
all of them.

The teacher's sampler, the quality classifier's fit and the student's data all index one
``(N, H, W[, C])`` stack by slice. :func:`build_project_stack` writes every volume of a
project, one after another, into memory maps in a work folder (never all in RAM: each volume
is copied a few slices at a time) with the pseudo-labels' map beside them, and records where
each volume lies (:class:`Span`).

The 2.5D context of a slice is its neighbours, clamped at the stack's ends
(:func:`~napari_distill.core.preprocess.context_indices`). Between two volumes the stack holds
``pad`` copies of the first volume's last slice, then ``pad`` copies of the next one's first
slice (``pad`` = the model's context slices; their labels are 0, so they are never annotated,
scored or accepted): a slice's context then never reaches into another volume, and reads
exactly what clamping inside its own volume would read.

The volumes must share their slices' height, width and colours (one stack); a volume that
differs is refused with its name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..preprocess import check_label_ids, is_rgb

COPY_SLICES = 16  # slices copied at a time: bounds the memory of building the stack
#: Why a project's teacher slices along the first axis only: no views (``ModelConfig.views``).
VIEWS_UNAVAILABLE = (
    "several images train as one stack of slices, volume after volume, so a network slicing "
    "across the slices (a view) would see one volume run into the next; every teacher slices "
    "along the first axis (Views are for one image at a time)"
)


@dataclass(frozen=True)
class Span:
    """Where volume ``name`` (``n`` slices) lies in the project's stack: ``start`` to ``stop``."""

    name: str
    start: int
    n: int

    @property
    def stop(self) -> int:
        return self.start + self.n


@dataclass
class ProjectStack:
    """The project's image, painted labels and pseudo-labels as memory maps, and the spans.

    Attributes
    ----------
    image:
        ``(N, H, W)`` or ``(N, H, W, C)``, every volume with ``pad`` edge copies between.
    labels:
        ``(N, H, W)`` the painted labels (0 on unlabelled volumes and on the pads).
    pseudo_labels:
        ``(N, H, W)`` filled by the caller with the teacher's labels per volume.
    spans:
        One :class:`Span` per volume, in the project's order.
    rgb:
        Whether the last axis is colour.
    """

    image: np.ndarray
    labels: np.ndarray
    pseudo_labels: np.ndarray
    spans: tuple[Span, ...]
    rgb: bool

    def span(self, name: str) -> Span:
        return next(s for s in self.spans if s.name == name)

    def volume(self, name: str) -> np.ndarray:
        """Volume ``name``'s own slices (a view of the map, no copy)."""
        span = self.span(name)
        return self.image[span.start : span.stop]

    def to_global(self, name: str, index: int) -> int:
        span = self.span(name)
        if not 0 <= index < span.n:
            raise IndexError(f"slice {index} is outside {name}'s {span.n} slices")
        return span.start + int(index)

    def to_local(self, index: int) -> tuple[str, int]:
        """``(volume name, slice)`` of slice ``index`` of the stack (never a pad)."""
        for span in self.spans:
            if span.start <= index < span.stop:
                return span.name, int(index) - span.start
        raise IndexError(f"slice {index} of the project's stack is a pad between volumes")


def _spatial(shape: tuple[int, ...], rgb: bool) -> tuple[int, ...]:
    return shape[:-1] if rgb else shape


def _chunks(n: int) -> Iterator[slice]:
    for start in range(0, n, COPY_SLICES):
        yield slice(start, min(n, start + COPY_SLICES))


def _widened(image_map: np.memmap, dtype: np.dtype, filled: int) -> np.memmap:
    """``image_map`` copied into a new map of ``dtype`` (its first ``filled`` slices), so a
    later volume of a wider intensity type (uint16 after uint8, float after integers) keeps
    its values instead of wrapping around. The new file sits beside the old one, which is
    deleted where the system allows it (not while mapped, on Windows)."""
    old = Path(image_map.filename)
    wider = np.lib.format.open_memmap(
        old.with_name(f"image_{dtype.name}.npy"), "w+", dtype, image_map.shape
    )
    for part in _chunks(filled):
        wider[part] = image_map[part]
    del image_map
    with contextlib.suppress(OSError):
        old.unlink()
    return wider


def build_project_stack(
    volumes: Iterator[tuple[str, object, np.ndarray | None, bool]],
    n_slices: list[int],
    work_dir: str | os.PathLike[str],
    pad: int = 0,
) -> ProjectStack:
    """Write the volumes into one stack of memory maps in ``work_dir``.

    Parameters
    ----------
    volumes:
        ``(name, image, labels or None, rgb)`` one at a time (images may be lazy: memmaps or
        dask arrays; 2D images count as one slice).
    n_slices:
        Each volume's slice count, in order (to size the maps before reading the volumes).
    pad:
        The model's 2.5D context slices: ``2 * pad`` edge copies between two volumes.

    The stack takes the first volume's intensity type, widened when a later volume's does
    not fit in it (``numpy.promote_types``: uint8 then uint16 gives uint16).

    Raises
    ------
    ValueError
        A volume's slices differ in size or colours from the first volume's.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    total = sum(n_slices) + 2 * pad * (len(n_slices) - 1)
    image_map: np.ndarray | None = None
    labels_map: np.ndarray | None = None
    spans: list[Span] = []
    position = 0
    first_rgb = False
    first_name = ""
    for number, (name, image, labels, rgb) in enumerate(volumes):
        rgb = is_rgb(image, rgb)  # type: ignore[arg-type]
        shape = tuple(int(s) for s in np.shape(image))
        if len(_spatial(shape, rgb)) == 2:  # a 2D image: one slice
            image = np.asarray(image)[np.newaxis]
            labels = None if labels is None else np.asarray(labels)[np.newaxis]
            shape = (1, *shape)
        if image_map is None:
            dtype = np.dtype(getattr(image, "dtype", np.float32))
            image_map = np.lib.format.open_memmap(
                work / "image.npy", "w+", dtype, (total, *shape[1:])
            )
            labels_map = np.lib.format.open_memmap(
                work / "labels.npy", "w+", np.uint16, (total, *shape[1:3])
            )
            first_rgb, first_name = rgb, name
        elif shape[1:] != image_map.shape[1:] or rgb != first_rgb:
            raise ValueError(
                f"{name}'s slices are {shape[1:]}{' (RGB)' if rgb else ''}, but {first_name}'s "
                f"are {image_map.shape[1:]}{' (RGB)' if first_rgb else ''}: a project's images "
                "must share their slices' size and colours (crop or pad them to one size)"
            )
        assert labels_map is not None
        dtype = np.dtype(getattr(image, "dtype", np.float32))
        if not np.can_cast(dtype, image_map.dtype, "safe"):
            image_map = _widened(image_map, np.promote_types(image_map.dtype, dtype), position)
        n = shape[0]
        if n != n_slices[number]:
            raise ValueError(f"{name} has {n} slices, {n_slices[number]} were expected")
        if number > 0 and pad:  # the previous volume's last slice, then this one's first
            image_map[position : position + pad] = np.asarray(image_map[position - 1])
            image_map[position + pad : position + 2 * pad] = np.asarray(image[0])
            position += 2 * pad
        for part in _chunks(n):
            image_map[position + part.start : position + part.stop] = np.asarray(image[part])
            if labels is not None:
                labels_map[position + part.start : position + part.stop] = check_label_ids(
                    np.asarray(labels[part])
                )
        spans.append(Span(name, position, n))
        position += n
    if image_map is None or labels_map is None:
        raise ValueError("a project needs at least one image")
    image_map.flush()
    labels_map.flush()
    pseudo = np.lib.format.open_memmap(
        work / "pseudo_labels.npy", "w+", np.uint16, labels_map.shape
    )
    return ProjectStack(image_map, labels_map, pseudo, tuple(spans), first_rgb)
