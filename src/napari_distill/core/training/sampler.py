"""Training batches: patches from the slices that have targets, with augmentation.

:class:`SliceSampler` takes the image stack and per-slice targets (ground truth for a teacher,
pseudo-labels and teacher probabilities for a student), pre-normalises those slices once and
draws seeded batches of patches: a share centred on a labelled foreground pixel (class first,
uniformly, so small organs are seen as often as large ones), the rest anywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ..preprocess import Normalization, labels_to_indices, slice_input

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augmentation:
    """Random changes applied to each training patch (intensities in normalised units).

    Geometric changes act on the image and every target alike (labels by nearest neighbour).
    """

    flips: bool = True
    rotations: bool = True  # multiples of 90 degrees, only for square patches
    intensity_scale: float = 0.1  # x multiplied by U(1 - s, 1 + s)
    intensity_shift: float = 0.1  # plus U(-s, s)
    noise_std: float = 0.03  # plus Gaussian noise of std U(0, noise_std)
    elastic: bool = False
    elastic_probability: float = 0.5
    elastic_alpha: float = 0.08  # displacement amplitude, as a fraction of the patch side
    elastic_sigma: float = 0.08  # smoothness of the displacement, fraction of the patch side

    @classmethod
    def none(cls) -> Augmentation:
        """No augmentation at all (validation, debugging)."""
        return cls(False, False, 0.0, 0.0, 0.0, False)


class SliceSampler:
    """Seeded batches of patches from the slices that have targets.

    Parameters
    ----------
    image_stack:
        ``(N, H, W, C)`` (see :func:`~napari_distill.core.preprocess.as_stack`); may be a
        memory map: only the target slices (and their 2.5D context) are read, once.
    targets:
        ``{slice index: (H, W) integer label array}`` in class ids; 0 is background.
    class_ids:
        Class id of each model output channel (``class_ids[0] == 0``).
    normalization:
        The intensity window.
    patch_size:
        Patch side in pixels; clamped to the slice's height and width, so patches of a small
        image are the whole image.
    batch_size:
        Patches per batch.
    context_slices:
        2.5D context on each side.
    foreground_fraction:
        Share of patches centred on a foreground pixel (class chosen uniformly first).
    augmentation:
        Random changes; None for none.
    soft_targets:
        Optional ``{slice index: (K, H, W) float}`` class probabilities (e.g. a teacher's),
        returned as ``"soft"``; needed for every slice in ``targets`` when given.
    weights:
        Optional ``{slice index: (H, W) float}`` per-pixel loss weights (0 = ignore),
        returned as ``"weight"``; slices without an entry weigh 1 everywhere.
    """

    def __init__(
        self,
        image_stack: np.ndarray,
        targets: Mapping[int, np.ndarray],
        class_ids: tuple[int, ...],
        normalization: Normalization,
        *,
        patch_size: int,
        batch_size: int,
        context_slices: int = 0,
        foreground_fraction: float = 0.7,
        augmentation: Augmentation | None = None,
        soft_targets: Mapping[int, np.ndarray] | None = None,
        weights: Mapping[int, np.ndarray] | None = None,
    ):
        if not targets:
            raise ValueError("no slice has a target to train on")
        height, width = image_stack.shape[1:3]
        self.slice_indices = tuple(sorted(int(i) for i in targets))
        self.class_ids = tuple(class_ids)
        self.num_classes = len(self.class_ids)
        self.batch_size = batch_size
        self.patch_shape = (min(patch_size, height), min(patch_size, width))
        self.foreground_fraction = foreground_fraction
        self.augmentation = augmentation or Augmentation.none()
        # Pre-normalised inputs: read and normalised once, not at every step.
        self._inputs = [
            slice_input(image_stack, i, normalization, context_slices) for i in self.slice_indices
        ]
        self._targets = []
        for i in self.slice_indices:
            target = np.asarray(targets[i])
            if target.shape != (height, width):
                raise ValueError(
                    f"the target of slice {i} has shape {target.shape}, the image's slices "
                    f"{(height, width)}"
                )
            # uint8 indices keep the cache small; up to 255 classes.
            dtype = np.uint8 if self.num_classes <= 256 else np.int64
            self._targets.append(labels_to_indices(target, self.class_ids).astype(dtype))
        self._soft = self._optional_per_slice(soft_targets, "soft targets", required=True)
        self._weights = self._optional_per_slice(weights, "weights", required=False)
        # Pixels per (slice, class): class-balanced centring picks a class present somewhere,
        # then a slice holding it (weighted by its pixel count), then one of its pixels.
        counts = np.stack(
            [np.bincount(t.ravel(), minlength=self.num_classes) for t in self._targets]
        )
        self._class_counts = counts[:, : self.num_classes]
        self._foreground_classes = np.flatnonzero(self._class_counts[:, 1:].sum(axis=0)) + 1
        if len(self._foreground_classes) == 0:
            logger.info("no foreground pixel in the targets: every patch is placed uniformly")

    def _optional_per_slice(
        self, values: Mapping[int, np.ndarray] | None, what: str, required: bool
    ) -> list[np.ndarray | None] | None:
        if values is None:
            return None
        out: list[np.ndarray | None] = []
        for index, target in zip(self.slice_indices, self._targets, strict=True):
            value = values.get(index)
            if value is None:
                if required:
                    raise ValueError(f"{what} are missing for slice {index}")
                out.append(None)
                continue
            value = np.asarray(value, dtype=np.float32)
            if value.shape[-2:] != target.shape:
                raise ValueError(
                    f"{what} of slice {index} have shape {value.shape}; expected "
                    f"(..., {target.shape[0]}, {target.shape[1]})"
                )
            out.append(value)
        return out

    @property
    def has_foreground(self) -> bool:
        """Whether any target pixel is foreground (else every patch is placed uniformly)."""
        return len(self._foreground_classes) > 0

    @property
    def target_indices(self) -> list[np.ndarray]:
        """The targets as channel indices, one ``(H, W)`` array per slice (read-only use)."""
        return list(self._targets)

    def _centre(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A slice position and a pixel: on a foreground pixel or anywhere."""
        if self.has_foreground and rng.random() < self.foreground_fraction:
            class_index = int(rng.choice(self._foreground_classes))
            counts = self._class_counts[:, class_index].astype(np.float64)
            position = int(rng.choice(len(counts), p=counts / counts.sum()))
            pixels = np.flatnonzero(self._targets[position] == class_index)
            flat = int(pixels[rng.integers(len(pixels))])
            row, col = divmod(flat, self._targets[position].shape[1])
            return position, row, col
        position = int(rng.integers(len(self.slice_indices)))
        height, width = self._targets[position].shape
        return position, int(rng.integers(height)), int(rng.integers(width))

    def _window(self, centre: int, size: int, extent: int, rng: np.random.Generator) -> slice:
        # Jitter the centre within the middle half of the patch so the foreground pixel is not
        # always at the exact centre; then shift the window to stay inside the slice.
        jitter = int(rng.integers(-(size // 4), size // 4 + 1)) if size >= 4 else 0
        start = min(max(centre - size // 2 + jitter, 0), extent - size)
        return slice(start, start + size)

    def sample(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One patch as NumPy arrays: ``x (C_in,P,P)``, ``y (P,P)`` and optional targets."""
        position, row, col = self._centre(rng)
        height, width = self._targets[position].shape
        region = (
            self._window(row, self.patch_shape[0], height, rng),
            self._window(col, self.patch_shape[1], width, rng),
        )
        patch = {
            "x": self._inputs[position][(slice(None), *region)],
            "y": self._targets[position][region],
        }
        if self._soft is not None:
            patch["soft"] = self._soft[position][(slice(None), *region)]  # type: ignore[index]
        if self._weights is not None:
            weight = self._weights[position]
            patch["weight"] = (
                np.ones(self.patch_shape, np.float32) if weight is None else weight[region]
            )
        return augment(patch, self.augmentation, rng)

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A batch: ``x (B,C_in,P,P) float32``, ``y (B,P,P) int64`` channel indices, and
        ``soft (B,K,P,P) float32`` / ``weight (B,P,P) float32`` when the sampler has them."""
        patches = [self.sample(rng) for _ in range(self.batch_size)]
        batch = {
            "x": torch.from_numpy(
                np.stack([p["x"] for p in patches]).astype(np.float32, copy=False)
            ),
            "y": torch.from_numpy(np.stack([p["y"] for p in patches]).astype(np.int64)),
        }
        for key in ("soft", "weight"):
            if key in patches[0]:
                stacked = np.stack([p[key] for p in patches]).astype(np.float32, copy=False)
                batch[key] = torch.from_numpy(stacked)
        return batch


def augment(
    patch: dict[str, np.ndarray], augmentation: Augmentation, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Apply random flips, rotations, elastic deformation and intensity changes to a patch.

    ``patch["x"]`` is ``(C, H, W)``; every other entry (``(H, W)`` or ``(K, H, W)``) is a
    target and follows the same geometric change. Returns new arrays (possibly views).
    """
    out = dict(patch)
    if augmentation.flips:
        for axis in (-1, -2):
            if rng.random() < 0.5:
                out = {key: np.flip(value, axis=axis) for key, value in out.items()}
    height, width = out["x"].shape[-2:]
    if augmentation.rotations and height == width:
        turns = int(rng.integers(4))
        if turns:
            out = {key: np.rot90(value, turns, axes=(-2, -1)) for key, value in out.items()}
    if augmentation.elastic and rng.random() < augmentation.elastic_probability:
        out = _elastic(out, augmentation, rng)
    x = out["x"]
    scale = 1.0 + rng.uniform(-augmentation.intensity_scale, augmentation.intensity_scale)
    shift = rng.uniform(-augmentation.intensity_shift, augmentation.intensity_shift)
    if scale != 1.0 or shift != 0.0 or augmentation.noise_std > 0:
        x = x * np.float32(scale) + np.float32(shift)  # a new array: the cache stays untouched
        if augmentation.noise_std > 0:
            sigma = rng.uniform(0.0, augmentation.noise_std)
            x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(sigma)
    out["x"] = x
    return out


def _elastic(
    patch: dict[str, np.ndarray], augmentation: Augmentation, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A smooth random displacement field, the same for the image and its targets."""
    height, width = patch["x"].shape[-2:]
    side = min(height, width)
    sigma = max(1.0, augmentation.elastic_sigma * side)
    alpha = augmentation.elastic_alpha * side
    displacements = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.uniform(-1, 1, (height, width)), sigma, mode="reflect")
        peak = np.abs(field).max()
        displacements.append(field * (alpha / peak) if peak > 0 else field)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    coords = np.stack((rows + displacements[0], cols + displacements[1]))

    def warp(array: np.ndarray, order: int) -> np.ndarray:
        if array.ndim == 2:
            return ndimage.map_coordinates(array, coords, order=order, mode="reflect")
        return np.stack(
            [ndimage.map_coordinates(a, coords, order=order, mode="reflect") for a in array]
        )

    out = {}
    for key, value in patch.items():
        if key == "y":
            out[key] = warp(np.ascontiguousarray(value), order=0)  # labels: nearest neighbour
        elif key == "weight":
            out[key] = warp(np.ascontiguousarray(value), order=0)
        else:  # image and soft targets: linear
            out[key] = warp(np.ascontiguousarray(value), order=1).astype(np.float32, copy=False)
    return out
