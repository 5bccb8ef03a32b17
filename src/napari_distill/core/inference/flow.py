"""Optical flow between neighbouring slices of a stack, and following it through several slices.

A flow is estimated on a grey version of each slice (the colour channels of an RGB stack
averaged after each is normalised), mapped to [0, 1] by robust percentiles of the whole image
and clipped: the flow estimators' default weights assume intensities of that range, and
clipping keeps noise in air and outliers in bone from driving them.

Conventions: a *flow* from slice ``source`` to slice ``target`` is a ``(2, H, W)`` float32
field ``v`` (rows, then columns) with ``target(x) ≈ source(x + v(x))``, the convention of
scikit-image's ``optical_flow_tvl1(reference_image=target, moving_image=source)``. A *map*
is a ``(2, H, W)`` field of absolute coordinates in a painted slice: where each pixel of the
current slice comes from. Following flows composes maps (one interpolation of coordinates
per slice) and the painted labels are sampled once at the end, so they are not blurred
once per slice on their way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

from ..config import PropagationConfig
from ..preprocess import Normalization, as_stack


def identity_map(height: int, width: int) -> np.ndarray:
    """The map of a painted slice onto itself: every pixel's own ``(row, column)``."""
    return np.mgrid[:height, :width].astype(np.float32)


def follow(previous: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The map of the next slice: ``previous(x + flow(x))``, interpolated linearly.

    Pixels whose flow points outside the slice take the nearest edge's coordinates.
    """
    height, width = flow.shape[1:]
    coords = identity_map(height, width) + flow
    return np.stack(
        [ndimage.map_coordinates(channel, coords, order=1, mode="nearest") for channel in previous]
    ).astype(np.float32, copy=False)


def carry(painted: np.ndarray, class_ids: tuple[int, ...], where: np.ndarray) -> np.ndarray:
    """Per-class probabilities ``(K, H, W)`` float32 of the painted labels sampled at a map.

    Each class's one-hot mask is interpolated linearly (classes absent from the painted slice
    stay 0), so the channels still sum to 1 and two directions can be blended.
    """
    out = np.zeros((len(class_ids), *where.shape[1:]), dtype=np.float32)
    present = set(np.unique(painted).tolist())
    for channel, class_id in enumerate(class_ids):
        if class_id in present:
            mask = (painted == class_id).astype(np.float32)
            out[channel] = ndimage.map_coordinates(mask, where, order=1, mode="nearest")
    return out


def estimate_flow(target: np.ndarray, source: np.ndarray, config: PropagationConfig) -> np.ndarray:
    """The flow ``v`` with ``target(x) ≈ source(x + v(x))`` between two grey slices in [0, 1].

    Returns
    -------
    np.ndarray
        ``(2, H, W)`` float32: row, then column displacements in pixels.
    """
    if config.flow == "tvl1":
        flow = optical_flow_tvl1(target, source, attachment=config.attachment)
    else:
        flow = optical_flow_ilk(target, source, radius=config.radius)
    return np.asarray(flow, dtype=np.float32)


class NeighbourFlows:
    """Flows between neighbouring slices of one stack, estimated on first use and kept.

    Flows depend on the image only, not on the labels, so one instance serves a propagation
    and its leave-one-out estimate (and several sets of painted slices): each flow is then
    estimated once. Kept flows stop at ``config.cache_mb``; beyond it they are estimated
    again when asked for.

    Parameters
    ----------
    image:
        ``(H, W)``, ``(H, W, C)``, ``(N, H, W)`` or ``(N, H, W, C)``; numpy, memory-mapped or
        dask (two slices are read per flow).
    config:
        The flow estimator, its settings and the intensity window.
    rgb:
        Whether the last axis is colour (None guesses as napari does).
    normalization:
        The intensity window; None estimates it from ``config.percentiles`` of the image.
    """

    def __init__(
        self,
        image: Any,
        config: PropagationConfig = PropagationConfig(),  # noqa: B008 - frozen
        *,
        rgb: bool | None = None,
        normalization: Normalization | None = None,
    ) -> None:
        self.stack = as_stack(image, rgb)
        self.config = config
        self.normalization = normalization or Normalization.from_image(
            self.stack, percentiles=config.percentiles
        )
        self.estimated = 0  # flows estimated so far (a cache hit does not count)
        self._kept: dict[tuple[int, int], np.ndarray] = {}
        self._budget = int(config.cache_mb * 1e6)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)`` of the stack."""
        return tuple(int(v) for v in self.stack.shape[:3])  # type: ignore[return-value]

    def grey(self, index: int) -> np.ndarray:
        """Slice ``index`` as ``(H, W)`` float32 in [0, 1]: normalised, clipped, colours
        averaged."""
        plane = self.normalization.apply(np.asarray(self.stack[index]))
        return np.clip(plane, 0.0, 1.0).mean(axis=-1, dtype=np.float32)

    def __call__(self, target: int, source: int) -> np.ndarray:
        """The flow from slice ``source`` to its neighbour ``target`` (see the module's
        conventions)."""
        if abs(target - source) != 1:
            raise ValueError(f"flows join neighbouring slices, got {source} -> {target}")
        key = (target, source)
        flow = self._kept.get(key)
        if flow is None:
            flow = estimate_flow(self.grey(target), self.grey(source), self.config)
            self.estimated += 1
            if (len(self._kept) + 1) * flow.nbytes <= self._budget:
                self._kept[key] = flow
        return flow
