"""What the plan of a teacher is made from: the data's own measurements.

:func:`measure` reads the painted slices (and a sample of the others) once and returns a frozen
:class:`DataFingerprint`: the slices' size, their count and spacing, the painted slices and, per
class, how large and how thin its painted pieces are, the intensities of the painted foreground
and of the whole image, and whether neighbouring slices continue each other (a volume) or not
(separate fields). :func:`~napari_distill.core.training.plan.plan_teacher` turns it into
settings. Only painted slices are read in full, so measuring a large stack stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ..preprocess import FOREGROUND_PERCENTILES, as_stack, labels_as_stack

# Percentiles of all intensities: the window the teacher used before any plan
# (Normalization.from_image's default).
IMAGE_PERCENTILES = (1.0, 99.0)
# Neighbouring slices sampled to decide whether the stack is a volume.
NEIGHBOUR_PAIRS = 8
MAX_SAMPLE = 1_000_000  # intensities kept for the percentiles


@dataclass(frozen=True)
class ClassSize:
    """The painted size of one class, in the image's pixels.

    Attributes
    ----------
    class_id:
        The class.
    pixels:
        Painted pixels over all painted slices.
    slices:
        Painted slices the class appears on.
    extent:
        The longer side of the bounding box of its largest piece on any painted slice: how
        far the network must see to hold it whole.
    thickness:
        The diameter of the largest disc that fits in it on a painted slice (twice the largest
        distance to its edge, minus one), the median over the slices it is painted on: how
        thin it is where it is thickest, which decides how much a reduction can take.
    """

    class_id: int
    pixels: int
    slices: int
    extent: int
    thickness: int


@dataclass(frozen=True)
class DataFingerprint:
    """The measurements a teacher's plan is made from (all plain values).

    Attributes
    ----------
    n_slices, height, width, colours:
        The stack's shape ``(N, H, W, C)``.
    rgb:
        Colour images (a stack of them is a stack of fields, not a volume).
    spacing:
        Voxel size ``(z, y, x)`` (``(y, x)`` for one image), in the file's unit; 1.0 where
        unknown.
    painted:
        Indices of the painted slices.
    classes:
        The painted size of every foreground class (:class:`ClassSize`).
    foreground_window:
        Intensities of the painted foreground (labels > 0) at
        :data:`FOREGROUND_PERCENTILES`, per colour channel.
    image_window:
        Intensities of the whole image at :data:`IMAGE_PERCENTILES`, per colour channel.
    neighbour_correlation:
        The median Pearson correlation of sampled neighbouring slices' pixels (None for fewer
        than two slices): near 1 where slices continue each other, near 0 for unrelated fields.
    """

    n_slices: int
    height: int
    width: int
    colours: int
    rgb: bool
    spacing: tuple[float, ...]
    painted: tuple[int, ...]
    classes: tuple[ClassSize, ...]
    foreground_window: tuple[tuple[float, float], ...]
    image_window: tuple[tuple[float, float], ...]
    neighbour_correlation: float | None

    @property
    def n_painted(self) -> int:
        return len(self.painted)

    @property
    def largest(self) -> ClassSize | None:
        """The class whose painted piece spans the most pixels."""
        return max(self.classes, key=lambda c: c.extent, default=None)

    @property
    def thinnest(self) -> ClassSize | None:
        """The class whose painted pieces are thinnest."""
        return min(self.classes, key=lambda c: c.thickness, default=None)

    @property
    def slice_spacing_ratio(self) -> float:
        """The distance between slices over the in-plane pixel size (1: isotropic; 1.0 when
        the spacing is not known)."""
        if len(self.spacing) < 3:
            return 1.0
        in_plane = float(np.sqrt(self.spacing[1] * self.spacing[2]))
        return float(self.spacing[0]) / in_plane if in_plane > 0 else 1.0

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for a ``weights_only`` checkpoint)."""
        return {
            "n_slices": self.n_slices,
            "height": self.height,
            "width": self.width,
            "colours": self.colours,
            "rgb": self.rgb,
            "spacing": list(self.spacing),
            "painted": list(self.painted),
            "classes": [
                {
                    "class_id": c.class_id,
                    "pixels": c.pixels,
                    "slices": c.slices,
                    "extent": c.extent,
                    "thickness": c.thickness,
                }
                for c in self.classes
            ],
            "foreground_window": [list(w) for w in self.foreground_window],
            "image_window": [list(w) for w in self.image_window],
            "neighbour_correlation": self.neighbour_correlation,
        }


def _class_size(labels_stack: np.ndarray, painted: Sequence[int], class_id: int) -> ClassSize:
    pixels = 0
    extents: list[int] = []
    thicknesses: list[int] = []
    for index in painted:
        mask = np.asarray(labels_stack[index]) == class_id
        count = int(mask.sum())
        if count == 0:
            continue
        pixels += count
        pieces, n_pieces = ndimage.label(mask)
        sizes = ndimage.sum_labels(mask, pieces, index=np.arange(1, n_pieces + 1))
        box = ndimage.find_objects(pieces)[int(np.argmax(sizes))]
        extents.append(max(s.stop - s.start for s in box))
        inner = ndimage.distance_transform_edt(np.pad(mask, 1))
        thicknesses.append(max(1, int(round(2 * float(inner.max()) - 1))))
    return ClassSize(
        class_id=int(class_id),
        pixels=pixels,
        slices=len(extents),
        extent=max(extents),
        thickness=int(np.median(thicknesses)),
    )


def _windows(
    values: np.ndarray, percentiles: tuple[float, float]
) -> tuple[tuple[float, float], ...]:
    if values.shape[0] == 0:
        return ()
    low = np.percentile(values, percentiles[0], axis=0)
    high = np.percentile(values, percentiles[1], axis=0)
    return tuple((float(a), float(b)) for a, b in zip(low, high, strict=True))


def _subsample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if values.shape[0] <= MAX_SAMPLE:
        return values
    return values[rng.choice(values.shape[0], MAX_SAMPLE, replace=False)]


def _neighbour_correlation(stack: np.ndarray, rng: np.random.Generator) -> float | None:
    n = stack.shape[0]
    if n < 2:
        return None
    starts = np.unique(rng.choice(n - 1, size=min(NEIGHBOUR_PAIRS, n - 1), replace=False))
    step = max(1, int(np.sqrt(stack.shape[1] * stack.shape[2] / 65_536)))  # <= ~64k pixels
    values = []
    for i in starts:
        a = np.asarray(stack[i, ::step, ::step], dtype=np.float64).ravel()
        b = np.asarray(stack[i + 1, ::step, ::step], dtype=np.float64).ravel()
        if a.std() < 1e-12 or b.std() < 1e-12:
            values.append(1.0 if np.allclose(a, b) else 0.0)
            continue
        values.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.median(values))


def measure(
    image: np.ndarray,
    labels: np.ndarray,
    spacing: Sequence[float] | None = None,
    rgb: bool | None = None,
    seed: int = 0,
) -> DataFingerprint:
    """Measure ``image`` and its painted ``labels`` for :func:`plan_teacher`.

    Parameters
    ----------
    image:
        2D, 2D RGB, a stack or an RGB stack (as :func:`~napari_distill.core.preprocess.as_stack`).
    labels:
        Class ids with the image's spatial shape; slices with any non-zero label are painted.
    spacing:
        Voxel size per spatial axis (``(z, y, x)`` or ``(y, x)``; a file's
        :attr:`~napari_distill.core.io.ImageData.scale` or a napari layer's ``scale``); None
        for unknown (1.0 per axis). Only its ratios matter.
    rgb:
        Whether the last axis of ``image`` is colour (None: guess as napari does).
    seed:
        Which intensities and neighbouring slices are sampled.
    """
    stack = as_stack(image, rgb)
    labels_stack = labels_as_stack(np.asarray(labels))
    n, h, w, c = stack.shape
    if labels_stack.shape != (n, h, w):
        raise ValueError(f"labels {labels_stack.shape} do not match the image's slices {(n, h, w)}")
    painted = [i for i in range(n) if np.any(labels_stack[i])]
    rng = np.random.default_rng(seed)
    ids = sorted({int(v) for i in painted for v in np.unique(labels_stack[i])} - {0})
    classes = tuple(_class_size(labels_stack, painted, k) for k in ids)
    foreground = [
        np.asarray(stack[i], dtype=np.float32)[np.asarray(labels_stack[i]) > 0] for i in painted
    ]
    fg = _subsample(np.concatenate(foreground) if foreground else np.zeros((0, c)), rng)
    per_slice = max(1, MAX_SAMPLE // max(1, h * w))
    chosen = np.sort(rng.choice(n, size=min(n, per_slice), replace=False))
    everything = np.asarray(stack[chosen], dtype=np.float32).reshape(-1, c)
    if spacing is None:
        spacing = (1.0,) * (3 if n > 1 else 2)
    spacing = tuple(float(s) for s in spacing)
    if n > 1 and len(spacing) == 2:
        spacing = (1.0, *spacing)
    return DataFingerprint(
        n_slices=n,
        height=h,
        width=w,
        colours=c,
        rgb=bool(c > 1),
        spacing=spacing[-3:] if n > 1 else spacing[-2:],
        painted=tuple(painted),
        classes=classes,
        foreground_window=_windows(fg, FOREGROUND_PERCENTILES),
        image_window=_windows(_subsample(everything, rng), IMAGE_PERCENTILES),
        neighbour_correlation=_neighbour_correlation(stack[..., 0], rng),
    )
