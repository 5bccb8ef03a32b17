"""Sliding-window prediction of one slice: tile positions, blending, tile size, context margin.

Tiles overlap and are blended with a Gaussian window (weights normalised by their sum, so a
constant prediction stays constant). Along an edge shared with a neighbouring tile, the first
``halo`` pixels get weight 0: a convolutional network's output near a tile edge sees zero
padding instead of the real neighbourhood, so those pixels are taken from the neighbour, whose
view of them is complete. With ``halo`` at least the network's receptive-field radius, tiled
and whole-slice predictions agree for networks without global operations.
"""

from __future__ import annotations

import copy
import logging
import math
import weakref
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ..config import PredictConfig
from .tissue import tissue_bounding_box

logger = logging.getLogger(__name__)

# Sigma of the blending Gaussian as a fraction of the tile (MONAI's and nnU-Net's choice).
SIGMA_FRACTION = 0.125
# Share of the device's free memory a forward pass may use (the rest: other tensors, slack).
MEMORY_FRACTION = 0.5
# Side of the probe tile whose forward pass measures activation memory per pixel.
_PROBE_SIZE = 64

_bytes_per_pixel_cache: weakref.WeakKeyDictionary[nn.Module, dict[tuple, float]] = (
    weakref.WeakKeyDictionary()
)
_receptive_field_cache: weakref.WeakKeyDictionary[nn.Module, dict[int, int]] = (
    weakref.WeakKeyDictionary()
)


def tile_starts(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``.

    The tiles are spread evenly, so the last one ends exactly at ``length``.
    """
    if tile >= length:
        return [0]
    step = max(1, tile - math.ceil(overlap * tile))
    count = math.ceil((length - tile) / step) + 1
    return [round(v) for v in np.linspace(0, length - tile, count)]


@lru_cache(maxsize=64)
def _profile(size: int, halo_before: int, halo_after: int) -> np.ndarray:
    """1D blending profile: a Gaussian, floored so every pixel keeps some weight, halos zero."""
    centre = (size - 1) / 2
    sigma = max(SIGMA_FRACTION * size, 1e-6)
    profile = np.exp(-0.5 * ((np.arange(size) - centre) / sigma) ** 2)
    profile = np.maximum(profile, 1e-3).astype(np.float32)
    profile[:halo_before] = 0
    if halo_after:
        profile[-halo_after:] = 0
    profile.setflags(write=False)
    return profile


def tile_grid(
    shape: tuple[int, int], tile: tuple[int, int], overlap: float, halo: int
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """Tiles covering a ``shape`` region and their ``(h, w)`` float32 blending weights.

    ``halo`` is capped at half the overlap so that every pixel keeps a positive total weight.
    """
    per_axis = []
    for length, size in zip(shape, tile, strict=True):
        size = min(size, length)
        starts = tile_starts(length, size, overlap)
        # Halos must fit in the smallest actual overlap, or pixels would lose every weight.
        gaps = [b - a for a, b in zip(starts[:-1], starts[1:], strict=True)]
        axis_halo = min(halo, (size - max(gaps)) // 2) if gaps else 0
        per_axis.append(
            [
                (
                    slice(start, start + size),
                    _profile(
                        size,
                        axis_halo if start > 0 else 0,
                        axis_halo if start + size < length else 0,
                    ),
                )
                for start in starts
            ]
        )
    return [
        ((rows, cols), np.outer(row_w, col_w))
        for rows, row_w in per_axis[0]
        for cols, col_w in per_axis[1]
    ]


def activation_bytes_per_pixel(model: nn.Module, in_channels: int, device: torch.device) -> float:
    """Bytes of activations per input pixel of one forward pass, measured on a small tile.

    Sums the outputs of every leaf module during a forward pass of a ``64 x 64`` probe: an
    upper bound of the peak (inference frees most of them early), which keeps tiles safe.
    Cached per model, input channels and device.
    """
    key = (in_channels, str(device))
    cached = _bytes_per_pixel_cache.setdefault(model, {})
    if key in cached:
        return cached[key]
    total = 0

    def count(_module: nn.Module, _inputs: object, output: object) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(count) for m in leaves]
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            probe = torch.zeros((1, in_channels, _PROBE_SIZE, _PROBE_SIZE), device=device)
            model(probe)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    # Input and softmax copies on top of the layers' outputs.
    per_pixel = total / _PROBE_SIZE**2 + 4 * (in_channels + 2)
    cached[key] = per_pixel
    return per_pixel


def receptive_field(model: nn.Module, in_channels: int, max_size: int = 1024) -> int:
    """Receptive field of ``model`` in pixels (odd), measured by back-propagation.

    A model may state it as an integer attribute ``receptive_field``. Otherwise a copy of the
    model with its normalisation layers made local (identity) back-propagates from one central
    output pixel of a random input; the field is the extent of the non-zero input gradient.
    (Group or instance normalisation mixes the whole input into every output, so it has no
    finite field; its statistics shift a little with the input extent whatever the margin.)
    """
    stated = getattr(model, "receptive_field", None)
    if isinstance(stated, int) and stated > 0:
        return stated
    members = getattr(model, "members", None)
    if isinstance(members, nn.ModuleList) and len(members):
        # An ensemble answers the log of its members' mean softmax; once trained, that softmax
        # saturates and the probe's gradient vanishes (a field of 1 pixel was measured, so the
        # crop to tissue cut the context away). Its field is its widest member's.
        return max(receptive_field(member, in_channels, max_size) for member in members)
    cached = _receptive_field_cache.setdefault(model, {})
    if in_channels in cached:
        return cached[in_channels]
    # Callers may be inside inference_mode or no_grad; the probe needs gradients.
    with torch.inference_mode(False), torch.enable_grad():
        field = _measure_receptive_field(model, in_channels, max_size)
    cached[in_channels] = field
    logger.debug("receptive field of %s: %d pixels", type(model).__name__, field)
    return field


def _measure_receptive_field(model: nn.Module, in_channels: int, max_size: int) -> int:
    probe_model = _local_copy(model)
    size = 64
    extent = size
    generator = torch.Generator().manual_seed(0)
    while size <= max_size:
        x = torch.rand((1, in_channels, size, size), generator=generator, requires_grad=True)
        out = probe_model(x)
        out[:, :, size // 2, size // 2].sum().backward()
        grad = x.grad.abs().sum(dim=(0, 1)) if x.grad is not None else torch.zeros(size, size)
        rows = torch.nonzero(grad.sum(dim=1)).flatten()
        cols = torch.nonzero(grad.sum(dim=0)).flatten()
        if rows.numel() == 0:
            extent = 1
            break
        extent = int(max(rows[-1] - rows[0], cols[-1] - cols[0])) + 1
        touches_edge = int(min(rows[0], cols[0])) == 0 or int(max(rows[-1], cols[-1])) == size - 1
        if not touches_edge:
            break
        size *= 2
    return extent | 1


def _local_copy(model: nn.Module) -> nn.Module:
    """A float32 CPU copy in eval mode whose normalisation layers are identities."""
    clone = copy.deepcopy(model).to("cpu").float().eval()
    norms = (nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.BatchNorm2d)
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, norms):
                setattr(module, child_name, nn.Identity())
    return clone


def choose_tile(
    shape: tuple[int, int],
    bytes_per_pixel: float,
    free_bytes: int,
    batch_size: int,
    multiple: int = 1,
    minimum: int = 32,
) -> tuple[int, int]:
    """Tile ``(h, w)`` for a region of ``shape``: the whole region when its forward pass fits
    in ``MEMORY_FRACTION`` of ``free_bytes``, else the largest square tile of which
    ``batch_size`` fit, rounded down to ``multiple`` pixels."""
    budget = MEMORY_FRACTION * free_bytes
    height, width = shape
    if height * width * bytes_per_pixel <= budget:
        return height, width
    side = int(math.sqrt(budget / (bytes_per_pixel * max(1, batch_size))))
    side = max(minimum, side - side % max(1, multiple))
    return min(side, height), min(side, width)


# The spatial axes flipped for each mirror image (identity first), as negative axes so they
# apply alike to (C, h, w) inputs, (K, h, w) probabilities and (h, w) tissue masks.
MIRROR_AXES: tuple[tuple[int, ...], ...] = ((), (-1,), (-2,), (-2, -1))


def _flip(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.flip(array, axes) if axes else array


class SlicePredictor:
    """Predicts slices with one model on one device, reusing its buffers between slices.

    Call it under ``torch.inference_mode()`` with the model in eval mode (as
    :func:`napari_distill.core.inference.predict_slice_probabilities` does).
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        config: PredictConfig,
        in_channels: int,
        num_classes: int | None = None,
    ):
        from ..device import autocast_dtype

        self.model = model
        self.device = device
        self.config = config
        self.in_channels = in_channels
        self.num_classes = num_classes or _model_classes(model, in_channels, device)
        self.multiple = int(getattr(model, "size_multiple", 1) or 1)
        use_amp = config.amp and device.type != "cpu"
        self.amp_dtype = autocast_dtype(device) if use_amp else None
        self._margin: int | None = None
        self._acc = np.zeros((0, 0, 0), np.float32)
        self._wsum = np.zeros((0, 0), np.float32)

    @property
    def margin(self) -> int:
        """Context kept around tissue and dropped at shared tile edges: the field's radius."""
        if self._margin is None:
            self._margin = receptive_field(self.model, self.in_channels) // 2 + 1
        return self._margin

    def tile(self, shape: tuple[int, int]) -> tuple[int, int]:
        if self.config.tile_size is not None:
            return min(self.config.tile_size, shape[0]), min(self.config.tile_size, shape[1])
        from ..device import free_memory_bytes

        per_pixel = activation_bytes_per_pixel(self.model, self.in_channels, self.device)
        if self.amp_dtype is not None:
            per_pixel /= 2  # half-precision activations
        return choose_tile(
            shape,
            per_pixel,
            free_memory_bytes(self.device),
            self.config.batch_size,
            multiple=self.multiple,
        )

    def crop_box(self, tissue: np.ndarray) -> tuple[slice, slice] | None:
        return tissue_bounding_box(tissue, self.margin, self.multiple)

    def predict(self, x: np.ndarray, tissue: np.ndarray | None) -> np.ndarray:
        """``(K, H, W)`` probabilities of a whole slice input, cropping/skipping by ``tissue``."""
        height, width = x.shape[1:]
        box: tuple[slice, slice] | None = (slice(0, height), slice(0, width))
        if tissue is not None and self.config.crop_to_tissue:
            box = self.crop_box(tissue)
        elif tissue is not None and self.config.skip_empty_tiles and not tissue.any():
            box = None
        out = np.zeros((self.num_classes, height, width), np.float32)
        out[0] = 1.0  # background wherever nothing is predicted
        if box is None:
            return out
        skip = tissue[box] if tissue is not None and self.config.skip_empty_tiles else None
        out[(slice(None), *box)] = self.predict_region(x[(slice(None), *box)], skip)
        return out

    def predict_region(self, x: np.ndarray, tissue: np.ndarray | None) -> np.ndarray:
        """``(K, h, w)`` float32 probabilities of a region (may be a reused buffer); with
        ``config.mirror`` the mean over the region and its three mirror images."""
        if not self.config.mirror:
            return self._predict_region(x, tissue)
        total = np.zeros((self.num_classes, *x.shape[1:]), np.float32)
        for axes in MIRROR_AXES:
            mirrored_tissue = None if tissue is None else _flip(tissue, axes)
            total += _flip(self._predict_region(_flip(x, axes), mirrored_tissue), axes)
        total /= len(MIRROR_AXES)
        return total

    def _predict_region(self, x: np.ndarray, tissue: np.ndarray | None) -> np.ndarray:
        height, width = x.shape[1:]
        tile_h, tile_w = self.tile((height, width))
        if tile_h >= height and tile_w >= width:
            if tissue is not None and not tissue.any():
                return _background(self.num_classes, (height, width))
            tensor = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None]
            return self._forward(tensor)[0].cpu().numpy()
        return self._predict_tiled(x, tissue, (tile_h, tile_w))

    def _predict_tiled(
        self, x: np.ndarray, tissue: np.ndarray | None, tile: tuple[int, int]
    ) -> np.ndarray:
        height, width = x.shape[1:]
        acc, wsum = self._buffers(height, width)
        batch_size = max(1, self.config.batch_size)
        batch = np.empty((batch_size, x.shape[0], *tile), np.float32)
        pending: list[tuple[tuple[slice, slice], np.ndarray]] = []

        def flush() -> None:
            probs = self._forward(torch.from_numpy(batch[: len(pending)]))
            weights = torch.from_numpy(np.stack([w for _, w in pending]))[:, None]
            weighted = (probs * weights.to(probs.device)).cpu().numpy()
            for (box, _), tile_probs in zip(pending, weighted, strict=True):
                acc[(slice(None), *box)] += tile_probs
            pending.clear()

        for box, weight in tile_grid((height, width), tile, self.config.overlap, self.margin):
            wsum[box] += weight
            if tissue is not None and not tissue[box].any():
                acc[(0, *box)] += weight  # background probability 1, without a forward pass
                continue
            batch[len(pending)] = x[(slice(None), *box)]
            pending.append((box, weight))
            if len(pending) == batch_size:
                flush()
        if pending:
            flush()
        np.divide(acc, wsum, out=acc)
        return acc

    def _buffers(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Zeroed accumulators, grown as needed and reused across slices (fewer page faults)."""
        k = self.num_classes
        if self._acc.shape[1] < height or self._acc.shape[2] < width:
            shape = (max(height, self._acc.shape[1]), max(width, self._acc.shape[2]))
            self._acc = np.zeros((k, *shape), np.float32)
            self._wsum = np.zeros(shape, np.float32)
        acc, wsum = self._acc[:, :height, :width], self._wsum[:height, :width]
        acc.fill(0)
        wsum.fill(0)
        return acc, wsum

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.amp_dtype is not None:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                logits = self.model(batch)
        else:
            logits = self.model(batch)
        if isinstance(logits, tuple):  # models that can also return features
            logits = logits[0]
        return torch.softmax(logits.float(), dim=1)


def _background(num_classes: int, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros((num_classes, *shape), np.float32)
    out[0] = 1.0
    return out


def _model_classes(model: nn.Module, in_channels: int, device: torch.device) -> int:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_classes"):
        return int(config.num_classes)
    was_training = model.training
    try:
        model.eval()
        with torch.inference_mode():
            out = model(torch.zeros((1, in_channels, 16, 16), device=device))
    finally:
        model.train(was_training)
    return int((out[0] if isinstance(out, tuple) else out).shape[1])
