"""From image arrays to network inputs: stack layout, robust normalisation, 2.5D context.

Conventions used everywhere in the core:

- An image is 2D ``(H, W)``, 2D RGB ``(H, W, 3)``, a stack ``(N, H, W)`` or an RGB stack
  ``(N, H, W, 3)``. :func:`as_stack` turns any of them into ``(N, H, W, C)`` without copying,
  so memory-mapped stacks stay on disk.
- Labels have the image's spatial shape (``(H, W)`` or ``(N, H, W)``); a slice is *annotated*
  when it has any non-zero label, and in an annotated slice 0 is background.
- Model output channel ``k`` stands for class id ``class_ids[k]``; ``class_ids[0] == 0``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RGB_CHANNELS = (3, 4)
# Percentiles of the painted foreground's intensities that bound a clipped window (nnU-Net's
# for CT): the rare extremes of what was painted fall outside.
FOREGROUND_PERCENTILES = (0.5, 99.5)


def is_rgb(image: np.ndarray, rgb: bool | None = None) -> bool:
    """Whether the last axis of ``image`` holds colour channels (napari's own guess if None)."""
    if rgb is not None:
        return rgb
    return image.ndim in (3, 4) and image.shape[-1] in RGB_CHANNELS


def as_stack(image: np.ndarray, rgb: bool | None = None) -> np.ndarray:
    """View ``image`` as ``(N, H, W, C)``; a 2D image becomes a stack of one slice."""
    colour = is_rgb(image, rgb)
    spatial = image.ndim - (1 if colour else 0)
    if spatial not in (2, 3):
        raise ValueError(
            f"expected a 2D image or a stack of 2D slices, got an array of shape {image.shape}"
            + (" (RGB)" if colour else "")
        )
    out = image if colour else image[..., np.newaxis]
    if spatial == 2:
        out = out[np.newaxis]
    if colour and out.shape[-1] == 4:  # RGBA: the alpha channel carries no stain information
        out = out[..., :3]
    return out


def labels_as_stack(labels: np.ndarray) -> np.ndarray:
    """View labels as ``(N, H, W)``."""
    if labels.ndim == 2:
        return labels[np.newaxis]
    if labels.ndim == 3:
        return labels
    raise ValueError(f"labels must be 2D or a stack of 2D slices, got shape {labels.shape}")


def check_pair(image_stack: np.ndarray, labels_stack: np.ndarray) -> None:
    """Raise a clear error when labels do not match the image's spatial shape."""
    if image_stack.shape[:3] != labels_stack.shape:
        raise ValueError(
            f"labels of shape {labels_stack.shape} do not match the image's slices "
            f"{image_stack.shape[:3]} (slices, height, width)"
        )


def check_label_ids(labels_stack: np.ndarray) -> np.ndarray:
    """``labels_stack`` as integer class ids (a boolean mask becomes uint8), checked.

    Raises
    ------
    ValueError
        Non-integer labels (an Image layer given for a Labels layer), or negative ids: the
        classes become a model's output channels and predicted labels are written as
        unsigned integers, so a negative id trained on could never be written back.
    """
    if labels_stack.dtype == bool:
        return labels_stack.astype(np.uint8)
    if not np.issubdtype(labels_stack.dtype, np.integer):
        raise ValueError(
            f"labels must hold integer class ids, got dtype {labels_stack.dtype}: use a napari "
            "Labels layer (not an Image layer) for the annotations"
        )
    if np.issubdtype(labels_stack.dtype, np.signedinteger) and labels_stack.min(initial=0) < 0:
        values, counts = np.unique(labels_stack[labels_stack < 0], return_counts=True)
        found = ", ".join(f"{v} ({c} pixels)" for v, c in zip(values[:5], counts[:5], strict=True))
        more = f" and {len(values) - 5} more" if len(values) > 5 else ""
        raise ValueError(
            f"the labels hold negative ids {found}{more}; class ids must be 0 (background, "
            "unpainted) or positive: relabel them (e.g. paint them over with a positive id)"
        )
    return labels_stack


def annotated_slices(labels: np.ndarray) -> np.ndarray:
    """Indices of slices with at least one non-zero label (ascending)."""
    stack = labels_as_stack(labels)
    return np.flatnonzero(np.asarray([np.any(s) for s in stack]))


def class_ids_from_labels(labels: np.ndarray, slices: np.ndarray | None = None) -> tuple[int, ...]:
    """Sorted class ids present in ``labels`` (on ``slices`` if given), with 0 first."""
    stack = labels_as_stack(labels)
    idx = annotated_slices(stack) if slices is None else np.asarray(slices)
    found: set[int] = {0}
    for i in idx:
        found.update(int(v) for v in np.unique(stack[i]))
    return tuple(sorted(found))


def labels_to_indices(labels: np.ndarray, class_ids: tuple[int, ...]) -> np.ndarray:
    """Map label values to model channel indices; unknown values raise."""
    lut_size = max(max(class_ids), int(labels.max(initial=0))) + 1
    lut = np.full(lut_size, -1, dtype=np.int64)
    lut[list(class_ids)] = np.arange(len(class_ids))
    out = lut[labels]
    if np.any(out < 0):
        unknown = sorted(set(np.unique(labels[out < 0]).tolist()))
        raise ValueError(f"labels hold class ids {unknown} the model does not know {class_ids}")
    return out


def indices_to_labels(indices: np.ndarray, class_ids: tuple[int, ...]) -> np.ndarray:
    """Map model channel indices back to label values (smallest unsigned dtype that fits)."""
    lut = np.asarray(class_ids, dtype=np.min_scalar_type(max(class_ids)))
    return lut[indices]


@dataclass(frozen=True)
class Normalization:
    """Per-colour-channel intensity window from robust percentiles: ``(x - low) / (high - low)``.

    Values outside the window are kept (not clipped) unless ``clip``: dense bone or air still
    differ from soft tissue after normalisation. With ``clip`` (:meth:`from_foreground`, the
    window of the painted structures, as nnU-Net normalises CT) they are clipped to [0, 1].
    """

    low: tuple[float, ...]
    high: tuple[float, ...]
    clip: bool = False

    @classmethod
    def from_image(
        cls,
        image_stack: np.ndarray,
        percentiles: tuple[float, float] = (1.0, 99.0),
        max_samples: int = 2_000_000,
        seed: int = 0,
    ) -> Normalization:
        """Estimate the window from a random sample of voxels of an ``(N, H, W, C)`` stack.

        Sampling whole slices keeps this cheap for memory-mapped stacks.
        """
        n, h, w, c = image_stack.shape
        rng = np.random.default_rng(seed)
        per_slice = h * w
        count = max(1, min(n, max_samples // max(per_slice, 1)))
        chosen = np.sort(rng.choice(n, size=count, replace=False))
        sample = np.asarray(image_stack[chosen], dtype=np.float32).reshape(-1, c)
        low = np.percentile(sample, percentiles[0], axis=0)
        high = np.percentile(sample, percentiles[1], axis=0)
        high = np.where(high - low < 1e-6, low + 1.0, high)
        return cls(tuple(float(v) for v in low), tuple(float(v) for v in high))

    @classmethod
    def from_foreground(
        cls,
        image_stack: np.ndarray,
        labels_stack: np.ndarray,
        slices: np.ndarray,
        percentiles: tuple[float, float] = FOREGROUND_PERCENTILES,
        max_samples: int = 2_000_000,
        seed: int = 0,
    ) -> Normalization:
        """The window of the painted foreground (labels > 0 on ``slices``), clipped.

        Raises
        ------
        ValueError
            Nothing is painted on ``slices``.
        """
        c = image_stack.shape[-1]
        parts = [
            np.asarray(image_stack[i], dtype=np.float32)[np.asarray(labels_stack[i]) > 0]
            for i in slices
        ]
        sample = np.concatenate(parts) if parts else np.zeros((0, c), np.float32)
        if sample.shape[0] == 0:
            raise ValueError("no painted foreground to take the intensity window from")
        if sample.shape[0] > max_samples:
            rng = np.random.default_rng(seed)
            sample = sample[rng.choice(sample.shape[0], max_samples, replace=False)]
        low = np.percentile(sample, percentiles[0], axis=0)
        high = np.percentile(sample, percentiles[1], axis=0)
        high = np.where(high - low < 1e-6, low + 1.0, high)
        return cls(tuple(float(v) for v in low), tuple(float(v) for v in high), clip=True)

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Normalise ``(..., C)`` data to float32."""
        low = np.asarray(self.low, dtype=np.float32)
        scale = 1.0 / (np.asarray(self.high, dtype=np.float32) - low)
        out = (np.asarray(data, dtype=np.float32) - low) * scale
        return np.clip(out, 0.0, 1.0, out=out) if self.clip else out

    def to_dict(self) -> dict[str, Any]:
        return {"low": list(self.low), "high": list(self.high), "clip": self.clip}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Normalization:
        return cls(
            tuple(float(v) for v in values["low"]),
            tuple(float(v) for v in values["high"]),
            bool(values.get("clip", False)),  # checkpoints before clipping existed: False
        )


def context_indices(index: int, n_slices: int, context_slices: int) -> list[int]:
    """Slice indices fed to a 2.5D model for slice ``index`` (edges repeat the end slice)."""
    return [
        min(max(index + offset, 0), n_slices - 1)
        for offset in range(-context_slices, context_slices + 1)
    ]


def input_channels(n_colours: int, context_slices: int) -> int:
    """Network input channels for an image with ``n_colours`` and a 2.5D context."""
    return n_colours * (2 * context_slices + 1)


def slice_input(
    image_stack: np.ndarray,
    index: int,
    normalization: Normalization,
    context_slices: int = 0,
    region: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """The normalised network input ``(C_in, H, W)`` float32 for one slice of a stack.

    Channels are ordered slice-major: all colours of the first context slice, then the next.
    ``region`` crops height and width before normalising (reads only that part from disk).
    """
    n = image_stack.shape[0]
    rows, cols = region if region is not None else (slice(None), slice(None))
    planes = [
        normalization.apply(image_stack[i, rows, cols])
        for i in context_indices(index, n, context_slices)
    ]
    stacked = np.concatenate(planes, axis=-1)  # (H, W, C_in)
    return np.ascontiguousarray(np.moveaxis(stacked, -1, 0))
