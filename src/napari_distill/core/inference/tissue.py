"""Where the tissue is: a background model estimated from the data, and a cheap tissue test.

Micro-CT slices are mostly air around the specimen, and Pap smear fields mostly glass between
the cells. Prediction only needs to run where something differs from that background, so
:mod:`~napari_distill.core.inference.predict` crops every slice to its tissue and skips tiles
that hold none. Nothing here knows an intensity: the background level and its noise are measured
once per stack on the image border (where a specimen rarely reaches), and a pixel counts as tissue
when its local mean differs from the background level by more than ``threshold`` robust
standard deviations of that local mean.

The test errs on the side of tissue: noise or uneven background only make the crop larger
(slower), while a faint object wider than the smoothing window still stands out because the
local mean averages the noise away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Window of the local mean (pixels): averages the noise down by about this factor, so a faint
# but extended object is detected while a lone noisy pixel is not.
SMOOTHING_PIXELS = 5
# Robust standard deviations (of the smoothed background) beyond which a pixel is tissue.
THRESHOLD_SPREADS = 6.0
# Border band used to measure the background, as a fraction of the slice's shorter side.
BORDER_FRACTION = 0.03
# Noise floor relative to the data's intensity range: a background that is exactly constant
# (zero padding) would otherwise make every rounding error "tissue".
_SPREAD_FLOOR = 1e-3
_MAD_TO_STD = 1.4826  # median absolute deviation -> standard deviation of a normal


@dataclass(frozen=True)
class BackgroundModel:
    """The background of a stack, per colour channel, in the stack's own intensity units.

    Attributes
    ----------
    level:
        Median of the smoothed border pixels, one value per colour channel.
    spread:
        Robust standard deviation (1.4826 x MAD) of the smoothed border pixels, with a floor of
        a thousandth of the data's intensity range.
    threshold:
        A pixel is tissue when ``|local mean - level| > threshold * spread`` in any channel.
    smoothing:
        Width of the local-mean window in pixels.
    """

    level: tuple[float, ...]
    spread: tuple[float, ...]
    threshold: float = THRESHOLD_SPREADS
    smoothing: int = SMOOTHING_PIXELS

    def tissue_mask(self, plane: np.ndarray) -> np.ndarray:
        """Boolean ``(H, W)`` mask of tissue in one slice ``(H, W, C)`` (or ``(H, W)``)."""
        data = plane if plane.ndim == 3 else plane[..., np.newaxis]
        if data.shape[-1] != len(self.level):
            raise ValueError(
                f"the background model has {len(self.level)} colour channel(s), the slice "
                f"of shape {plane.shape} has {data.shape[-1]}"
            )
        mask = np.zeros(data.shape[:2], dtype=bool)
        for channel, (level, spread) in enumerate(zip(self.level, self.spread, strict=True)):
            local = _local_mean(np.asarray(data[..., channel], dtype=np.float32), self.smoothing)
            local -= np.float32(level)
            mask |= np.abs(local) > np.float32(self.threshold * spread)
        return mask


def _local_mean(values: np.ndarray, size: int) -> np.ndarray:
    if size <= 1:
        return values.copy()
    return ndimage.uniform_filter(values, size=size, mode="nearest")


def _border_band(plane: np.ndarray, width: int) -> list[np.ndarray]:
    """Top, bottom, left and right bands of an ``(H, W, C)`` slice."""
    return [plane[:width], plane[-width:], plane[:, :width], plane[:, -width:]]


def estimate_background(
    image_stack: np.ndarray,
    max_slices: int = 16,
    threshold: float = THRESHOLD_SPREADS,
    smoothing: int = SMOOTHING_PIXELS,
) -> BackgroundModel:
    """Measure the background level and noise of an ``(N, H, W, C)`` stack on its border.

    Only the border bands of up to ``max_slices`` evenly spaced slices and a coarse grid of
    their pixels are read, so a memory-mapped stack stays on disk.

    Parameters
    ----------
    image_stack:
        The stack as :func:`napari_distill.core.preprocess.as_stack` returns it.
    max_slices:
        Slices sampled.
    threshold, smoothing:
        Stored in the model (see :class:`BackgroundModel`).
    """
    if image_stack.ndim != 4:
        raise ValueError(
            f"estimate_background expects an (N, H, W, C) stack, got shape {image_stack.shape}"
        )
    n, height, width, colours = image_stack.shape
    width_px = max(smoothing, 2, round(BORDER_FRACTION * min(height, width)))
    width_px = min(width_px, max(1, min(height, width) // 2))
    chosen = np.unique(np.linspace(0, n - 1, num=min(n, max_slices)).round().astype(int))
    # A grid of about 256 x 256 pixels per slice is plenty for the intensity range.
    stride = max(1, max(height, width) // 256)
    border: list[np.ndarray] = []
    coarse: list[np.ndarray] = []
    for index in chosen:
        for band in _border_band(image_stack[index], width_px):
            band = np.asarray(band, dtype=np.float32)
            smoothed = np.stack(
                [_local_mean(band[..., c], smoothing) for c in range(colours)], axis=-1
            )
            border.append(smoothed.reshape(-1, colours))
        coarse.append(
            np.asarray(image_stack[index, ::stride, ::stride], np.float32).reshape(-1, colours)
        )
    border_values = np.concatenate(border)
    coarse_values = np.concatenate(coarse)
    level = np.median(border_values, axis=0)
    spread = _MAD_TO_STD * np.median(np.abs(border_values - level), axis=0)
    low, high = np.percentile(coarse_values, [0.1, 99.9], axis=0)
    spread = np.maximum(spread, _SPREAD_FLOOR * (high - low))
    return BackgroundModel(
        level=tuple(float(v) for v in level),
        spread=tuple(float(v) for v in spread),
        threshold=threshold,
        smoothing=smoothing,
    )


def tissue_bounding_box(
    mask: np.ndarray, margin: int = 0, multiple: int = 1
) -> tuple[slice, slice] | None:
    """Rows and columns of the box around ``mask``, grown by ``margin`` pixels of context.

    The box is then grown (within the slice) to a multiple of ``multiple`` pixels where room
    allows, so that a network that pads its input to such a multiple sees real context
    instead of padding. None when the mask is empty.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (
        _grow(int(rows[0]), int(rows[-1]) + 1, margin, multiple, mask.shape[0]),
        _grow(int(cols[0]), int(cols[-1]) + 1, margin, multiple, mask.shape[1]),
    )


def _grow(start: int, stop: int, margin: int, multiple: int, length: int) -> slice:
    start, stop = max(0, start - margin), min(length, stop + margin)
    missing = -(stop - start) % max(1, multiple)
    if missing:
        extra_after = min(missing, length - stop)
        stop += extra_after
        start = max(0, start - (missing - extra_after))
    return slice(start, stop)
