"""Seeded weak labels from full ones: scribbles (short strokes) and points per structure.

What a hurried annotator makes in napari: a stroke of a few pixels through each structure
(a connected piece of one class on one slice) and through the background, or a click or two in
each. Strokes follow the structure's skeleton (so they stay inside it, as a user's do) from a
random point on it; points are drawn from the structure's inner half (its pixels at least half
its largest distance from the border). In the weak labels 0 means *unknown*, so the background
is painted with its own label, ``background_label``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

DEFAULT_BACKGROUND_LABEL = 255


def _structures(plane: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(class id, mask)`` of every connected piece of every class, background included."""
    for label in np.unique(plane):
        pieces, count = ndimage.label(plane == label)
        for k in range(1, count + 1):
            yield int(label), pieces == k


def _stroke(mask: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``length`` connected skeleton pixels of ``mask``, walked from a random one."""
    skeleton = skeletonize(mask)
    if not skeleton.any():
        skeleton = mask
    rows, cols = np.nonzero(skeleton)
    start = int(rng.integers(len(rows)))
    on = set(zip(rows.tolist(), cols.tolist(), strict=True))
    seen = {(int(rows[start]), int(cols[start]))}
    queue = deque(seen)
    path = []
    while queue and len(path) < length:
        r, c = queue.popleft()
        path.append((r, c))
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                nxt = (r + dr, c + dc)
                if nxt in on and nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
    stroke = np.zeros_like(mask)
    stroke[tuple(np.array(path).T)] = True
    return stroke


def simulate_scribbles(
    labels: np.ndarray,
    slices: Sequence[int] | None = None,
    length: int = 20,
    seed: int = 0,
    background_label: int = DEFAULT_BACKGROUND_LABEL,
    min_pixels: int = 4,
) -> np.ndarray:
    """Scribbles of ``length`` pixels through every structure of the chosen slices.

    Parameters
    ----------
    labels:
        Full class ids, ``(H, W)`` or ``(N, H, W)``.
    slices:
        Slices to scribble on (default: all).
    length:
        Stroke length in pixels per structure (shorter when the skeleton is).
    seed:
        Seed of the random starting points.
    background_label:
        The label painted for the background (0 means unknown in weak labels).
    min_pixels:
        Structures smaller than this are not scribbled (a user would not see them).

    Returns
    -------
    np.ndarray
        Weak labels of ``labels``' shape (``uint16``): 0 unknown, the class id on strokes.
    """
    full = np.asarray(labels)
    stack = full[None] if full.ndim == 2 else full
    rng = np.random.default_rng(seed)
    weak = np.zeros(stack.shape, np.uint16)
    for z in range(len(stack)) if slices is None else slices:
        for label, mask in _structures(stack[z]):
            if mask.sum() < min_pixels:
                continue
            weak[z][_stroke(mask, length, rng)] = background_label if label == 0 else label
    return weak.reshape(full.shape)


def simulate_points(
    labels: np.ndarray,
    slices: Sequence[int] | None = None,
    per_structure: int = 1,
    seed: int = 0,
    min_pixels: int = 4,
) -> np.ndarray:
    """Clicks in every structure of the chosen slices, as rows ``(slice, y, x, class)``.

    The background is a structure too (class 0 in the rows: points have no unknown value).
    Points are drawn from each structure's inner half, without repeats.
    """
    full = np.asarray(labels)
    stack = full[None] if full.ndim == 2 else full
    rng = np.random.default_rng(seed)
    rows_out: list[tuple[int, int, int, int]] = []
    for z in range(len(stack)) if slices is None else slices:
        for label, mask in _structures(stack[z]):
            if mask.sum() < min_pixels:
                continue
            distance = ndimage.distance_transform_edt(mask)
            inner = np.argwhere(distance >= distance.max() / 2)
            for index in rng.choice(len(inner), min(per_structure, len(inner)), replace=False):
                rows_out.append((int(z), int(inner[index][0]), int(inner[index][1]), label))
    return np.asarray(rows_out, np.int64).reshape(-1, 4)
