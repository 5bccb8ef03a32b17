"""Seeded corruption of label masks at a chosen share of wrong pixels (benchmarks and tests).

Real annotations painted in a hurry are eroded, dilated, wobbly, shifted, miss a structure or
add one that is not there. :func:`corrupt_labels` makes each of these from clean labels, one
2D slice at a time, until a requested **noise share** is reached:

    share = (pixels whose label differs from the clean one)
            / (pixels that either the clean or the noisy labels call foreground)

that is ``1 - IoU`` of the foreground, counting a wrong class as wrong. It is the answer to
"about what share of your painted pixels is wrong?" (0.3: a third of what is painted or should
have been is off). The share is hit to within one pixel, not a radius step: every kind of
corruption lists its candidate changes in the order a growing corruption would make them
(erosion: from the border inwards; dilation: from the border outwards; a distorted boundary:
where a smooth random field outweighs the distance to the border; a shift: step by step;
missed structures: one structure after another, each cut away from a random point; spurious
structures: blobs grown from random centres), and the longest prefix that stays at or below
the target is applied, plus the one change that crosses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

NOISE_KINDS = ("erosion", "dilation", "boundary", "shift", "missed", "spurious")
MIXTURE = "mixture"


def noise_share(noisy: np.ndarray, clean: np.ndarray) -> float:
    """Share of wrong pixels among those either mask calls foreground (0 when both are empty)."""
    noisy, clean = np.asarray(noisy), np.asarray(clean)
    union = np.count_nonzero((noisy != 0) | (clean != 0))
    return 0.0 if union == 0 else float(np.count_nonzero(noisy != clean)) / union


class _State:
    """The noisy labels being built, with running counts of wrong and foreground pixels."""

    def __init__(self, clean: np.ndarray):
        self.clean = clean.reshape(-1)
        self.noisy = self.clean.copy()
        self.wrong = 0
        self.union = int(np.count_nonzero(self.clean))

    @property
    def share(self) -> float:
        return 0.0 if self.union == 0 else self.wrong / self.union

    def apply(self, pixels: np.ndarray, labels: np.ndarray, target: float) -> bool:
        """Make the changes in order until the share reaches ``target``; True once reached.

        ``pixels`` are flat indices (unique), ``labels`` their new values.
        """
        if len(pixels) == 0:
            return self.share >= target
        truth = self.clean[pixels]
        before = self.noisy[pixels]
        d_wrong = (labels != truth).astype(np.int64) - (before != truth)
        d_union = ((labels != 0) | (truth != 0)).astype(np.int64) - ((before != 0) | (truth != 0))
        wrong = self.wrong + np.cumsum(d_wrong)
        union = np.maximum(self.union + np.cumsum(d_union), 1)
        reached = np.flatnonzero(wrong >= target * union)
        count = len(pixels) if len(reached) == 0 else int(reached[0]) + 1
        if len(reached) and count > 1:
            # Stop on whichever side of the target is nearer.
            above = wrong[count - 1] / union[count - 1] - target
            below = target - wrong[count - 2] / union[count - 2]
            count -= int(below < above)
        self.noisy[pixels[:count]] = labels[:count]
        self.wrong = int(wrong[count - 1]) if count else self.wrong
        self.union = int(union[count - 1]) if count else self.union
        return len(reached) > 0


def _as_slices(labels: np.ndarray) -> np.ndarray:
    return labels[None] if labels.ndim == 2 else labels


def _nearest_label(noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 2D slice: the distance to the nearest foreground pixel and that pixel's label."""
    distance = np.zeros(noisy.shape, np.float64)
    nearest = np.zeros_like(noisy)
    for z, plane in enumerate(noisy):
        if not plane.any():
            distance[z] = np.inf
            continue
        d, (rows, cols) = ndimage.distance_transform_edt(plane == 0, return_indices=True)
        distance[z], nearest[z] = d, plane[rows, cols]
    return distance, nearest


def _inside_distance(noisy: np.ndarray) -> np.ndarray:
    """Per 2D slice: each foreground pixel's distance to a pixel of another label."""
    out = np.zeros(noisy.shape, np.float64)
    for z, plane in enumerate(noisy):
        for label in np.unique(plane[plane != 0]):
            own = plane == label
            out[z][own] = ndimage.distance_transform_edt(own)[own]
    return out


def _ordered(score: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flat indices of ``mask`` by increasing ``score`` (random order among ties)."""
    pixels = np.flatnonzero(mask)
    jitter = rng.random(len(pixels)) * 1e-3
    return pixels[np.argsort(score.reshape(-1)[pixels] + jitter, kind="stable")]


def _smooth_field(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A smooth random field of unit spread per 2D slice (wobbles a few pixels across)."""
    sigma = max(2.0, min(shape[-2:]) / 32)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), (0, sigma, sigma))
    spread = field.std(axis=(-2, -1), keepdims=True)
    return field / np.where(spread > 0, spread, 1.0)


def _changes(
    kind: str, noisy: np.ndarray, rng: np.random.Generator
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Batches of ordered changes ``(flat pixels, new labels)`` of corruption ``kind``."""
    flat = noisy.reshape(-1)
    if kind == "erosion":
        pixels = _ordered(_inside_distance(noisy), noisy != 0, rng)
        yield pixels, np.zeros(len(pixels), noisy.dtype)
    elif kind == "dilation":
        distance, nearest = _nearest_label(noisy)
        pixels = _ordered(distance, (noisy == 0) & np.isfinite(distance), rng)
        yield pixels, nearest.reshape(-1)[pixels]
    elif kind == "boundary":
        field = _smooth_field(noisy.shape, rng)
        outside, nearest = _nearest_label(noisy)
        inside = _inside_distance(noisy)
        # A pixel flips once amplitude * |field| exceeds its distance to the border, on the
        # side where the field pushes the border across it.
        shrink = (noisy != 0) & (field < 0)
        grow = (noisy == 0) & (field > 0) & np.isfinite(outside)
        score = np.full(noisy.shape, np.inf)
        score[shrink] = inside[shrink] / -field[shrink]
        score[grow] = outside[grow] / field[grow]
        pixels = _ordered(score, shrink | grow, rng)
        new = np.where(flat[pixels] != 0, 0, nearest.reshape(-1)[pixels]).astype(noisy.dtype)
        yield pixels, new
    elif kind == "shift":
        angles = rng.uniform(0, 2 * np.pi, len(noisy))
        original = noisy.copy()
        previous = original
        for step in range(1, max(noisy.shape[-2:])):
            shifted = np.stack(
                [
                    ndimage.shift(plane, (step * np.sin(a), step * np.cos(a)), order=0, cval=0)
                    for plane, a in zip(original, angles, strict=True)
                ]
            )
            changed = rng.permutation(np.flatnonzero(shifted != previous))
            previous = shifted
            yield changed, shifted.reshape(-1)[changed]
    elif kind == "missed":
        components = []
        for z, plane in enumerate(noisy):
            for label in np.unique(plane[plane != 0]):
                pieces, count = ndimage.label(plane == label)
                components += [(z, pieces == k) for k in range(1, count + 1)]
        for index in rng.permutation(len(components)):
            z, piece = components[index]
            rows, cols = np.nonzero(piece)
            seed = rng.integers(len(rows))
            order = np.argsort((rows - rows[seed]) ** 2 + (cols - cols[seed]) ** 2, kind="stable")
            pixels = np.ravel_multi_index((np.full(len(rows), z), rows, cols), noisy.shape)[order]
            yield pixels, np.zeros(len(pixels), noisy.dtype)
    elif kind == "spurious":
        present = np.unique(flat[flat != 0])
        classes = present if len(present) else np.array([1], noisy.dtype)
        radius = _typical_radius(noisy)
        height, width = noisy.shape[-2:]
        for _ in range(10_000):
            z = int(rng.integers(len(noisy)))
            centre = rng.uniform((0, 0), (height, width))
            r = radius * rng.uniform(0.6, 1.4, 2)
            rows, cols = np.mgrid[:height, :width]
            distance = ((rows - centre[0]) / r[0]) ** 2 + ((cols - centre[1]) / r[1]) ** 2
            blob = (distance <= 1) & (noisy[z] == 0)
            rows, cols = np.nonzero(blob)
            order = np.argsort(distance[rows, cols], kind="stable")
            pixels = np.ravel_multi_index((np.full(len(rows), z), rows, cols), noisy.shape)
            yield pixels[order], np.full(len(rows), rng.choice(classes), noisy.dtype)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS + (MIXTURE,)}")


def _typical_radius(labels: np.ndarray) -> float:
    """The median equivalent radius of the structures (connected pieces of a class)."""
    areas = []
    for plane in labels:
        for label in np.unique(plane[plane != 0]):
            pieces, count = ndimage.label(plane == label)
            areas += list(np.bincount(pieces.ravel())[1:])
    return max(2.0, float(np.sqrt(np.median(areas) / np.pi))) if areas else 4.0


def corrupt_labels(
    labels: np.ndarray,
    share: float,
    kind: str = MIXTURE,
    seed: int = 0,
    kinds: Sequence[str] = NOISE_KINDS,
) -> np.ndarray:
    """Labels corrupted by ``kind`` until ``share`` of the foreground pixels are wrong.

    Parameters
    ----------
    labels:
        Clean class ids, ``(H, W)`` or ``(N, H, W)`` (corrupted slice by slice in 2D, the share
        counted over the whole array).
    share:
        The wrong share to reach, in ``[0, 1)`` (see the module's docstring).
    kind:
        One of :data:`NOISE_KINDS`, or ``"mixture"``: each of ``kinds`` in turn (in a seeded
        random order), each adding an equal part of the share.
    seed:
        Seed of the random choices; the same seed gives the same labels.

    Returns
    -------
    np.ndarray
        Noisy labels of the same shape and dtype. When a kind cannot reach the share (erosion
        of labels with no foreground), the labels are as corrupted as it can make them.

    Raises
    ------
    ValueError
        ``share`` outside ``[0, 1)`` or an unknown kind.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the noise share must be in [0, 1), got {share}")
    clean = np.asarray(labels)
    stack = _as_slices(clean)
    rng = np.random.default_rng(seed)
    state = _State(stack)
    order = [kinds[i] for i in rng.permutation(len(kinds))] if kind == MIXTURE else [kind]
    for position, part in enumerate(order):
        target = share * (position + 1) / len(order)
        for pixels, new in _changes(part, state.noisy.reshape(stack.shape), rng):
            if state.apply(pixels, new, target):
                break
    return state.noisy.reshape(clean.shape)
