"""A seeded synthetic whole-body micro-CT of a juvenile Medaka, with organ ground truth.

The fish lies with its long axis along Y (head at the top), its dorsoventral axis along Z
(slice 0 is dorsal) and left-right along X, so that most slices along axis 0 are frontal
sections through the fish and show several organs side by side.

Every voxel gets a tissue (:mod:`.medaka_anatomy`); a tissue has a density (CT attenuation),
a class label and a texture strength.
The CT image is the density map blurred (partial volume) plus Poisson and Gaussian noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .medaka_anatomy import REFERENCE_SHAPE, TISSUES, paint_anatomy

logger = logging.getLogger(__name__)

# A ~9 mm juvenile fills the default field of view at 40 um voxels; other shapes keep the
# field of view, so their voxels are larger or smaller.
REFERENCE_VOXEL_UM = 40.0
MIN_SHAPE = 8

MEDAKA_CLASSES: dict[int, str] = {
    1: "vertebrae",
    2: "eye",
    3: "lens",
    4: "brain",
    5: "heart",
    6: "liver",
    7: "gut",
    8: "kidney",
    9: "swim bladder",
}


@dataclass(frozen=True, eq=False)
class MedakaSample:
    """A synthetic Medaka micro-CT volume with sparse and full organ labels.

    Attributes
    ----------
    image:
        ``(Z, Y, X)`` uint16 CT intensities.
    labels_full:
        ``(Z, Y, X)`` uint8 organ label of every voxel (0: background and unlabelled tissue).
    labels_sparse:
        ``labels_full`` on the ``annotated`` slices along axis 0, zero elsewhere.
    annotated:
        Indices of the annotated slices (ascending).
    class_names:
        Organ name of every class id.
    scale:
        Voxel size ``(z, y, x)`` in micrometres.
    """

    image: np.ndarray
    labels_full: np.ndarray
    labels_sparse: np.ndarray
    annotated: np.ndarray
    class_names: dict[int, str]
    scale: tuple[float, float, float]


def _render(
    tissue: np.ndarray, shape: tuple[int, int, int], rng: np.random.Generator
) -> np.ndarray:
    """CT intensities: textured densities, partial-volume blur, photon and detector noise."""
    table = np.asarray(list(TISSUES.values()), dtype=np.float32)
    factors = np.asarray(shape, dtype=np.float32) / np.asarray(REFERENCE_SHAPE, np.float32)
    coarse = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 2.5 * factors)
    coarse /= coarse.std() + 1e-6
    fine = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.7 * factors)
    fine /= fine.std() + 1e-6
    density = table[tissue, 0] * (1 + table[tissue, 2] * coarse + table[tissue, 3] * fine)
    density = ndimage.gaussian_filter(density, 0.8)  # partial volume / reconstruction blur
    # A 12-bit-like range: the noise (std ~9 grey levels) keeps the shipped TIFF small.
    mean_grey = 1000.0 + 600.0 * density
    photons = rng.poisson(np.clip(mean_grey, 1, None) / 0.05).astype(np.float32) * 0.05
    noisy = photons + rng.normal(0, 4.0, shape).astype(np.float32)
    return np.clip(noisy, 0, np.iinfo(np.uint16).max).astype(np.uint16)


def _choose_slices(labels_full: np.ndarray, n_annotated: int) -> np.ndarray:
    """Slices spread over the fish, as a biologist would paint them: skip the fish's edges."""
    area = np.count_nonzero(labels_full.reshape(labels_full.shape[0], -1), axis=1)
    candidates = np.flatnonzero(area >= 0.15 * area.max()) if area.max() > 0 else np.array([])
    if candidates.size < n_annotated:
        raise ValueError(
            f"n_annotated={n_annotated} is more than the {candidates.size} slices with organs "
            f"in a volume of shape {labels_full.shape}; choose fewer annotated slices"
        )
    picks = np.linspace(0, candidates.size - 1, n_annotated + 2)[1:-1] if n_annotated else []
    chosen = np.unique(candidates[np.round(np.asarray(picks)).astype(int)])
    # Rounding can merge neighbours in small volumes: fill up from the unused candidates.
    spare = [c for c in candidates if c not in set(chosen.tolist())]
    while chosen.size < n_annotated:
        chosen = np.sort(np.append(chosen, spare.pop(len(spare) // 2)))
    return chosen.astype(np.intp)


def make_medaka(
    shape: tuple[int, int, int] = REFERENCE_SHAPE, n_annotated: int = 6, seed: int = 0
) -> MedakaSample:
    """Make a synthetic whole-body micro-CT of a juvenile Medaka with organ labels.

    Parameters
    ----------
    shape:
        ``(Z, Y, X)``: dorsoventral, head-to-tail, left-right. Anatomy scales to any shape;
        the field of view stays the same, so the voxel size changes with it.
    n_annotated:
        Number of slices along axis 0 copied into ``labels_sparse``.
    seed:
        Seed of the random generator; each seed gives a different fish.

    Returns
    -------
    MedakaSample
        The image, full and sparse labels, annotated slices, class names and voxel size.

    Raises
    ------
    ValueError
        If ``shape`` is not three sizes of at least 8 voxels, or ``n_annotated`` is negative
        or exceeds the slices that show organs.
    """
    shape = tuple(int(n) for n in shape)  # type: ignore[assignment]
    if len(shape) != 3 or min(shape) < MIN_SHAPE:
        raise ValueError(
            f"shape must be three sizes (Z, Y, X) of at least {MIN_SHAPE}, got {shape}"
        )
    if n_annotated < 0:
        raise ValueError(f"n_annotated must be zero or more, got {n_annotated}")
    rng = np.random.default_rng(seed)
    tissue = paint_anatomy(shape, rng)
    label_of = np.asarray([label for _, label, _, _ in TISSUES.values()], dtype=np.uint8)
    labels_full = label_of[tissue]
    image = _render(tissue, shape, rng)
    annotated = _choose_slices(labels_full, n_annotated)
    labels_sparse = np.zeros_like(labels_full)
    labels_sparse[annotated] = labels_full[annotated]
    scale = tuple(
        REFERENCE_VOXEL_UM * ref / n for ref, n in zip(REFERENCE_SHAPE, shape, strict=True)
    )
    logger.debug("made a Medaka sample of shape %s (seed %d)", shape, seed)
    return MedakaSample(image, labels_full, labels_sparse, annotated, dict(MEDAKA_CLASSES), scale)


def reslice_medaka(
    sample: MedakaSample, *, axis: int = 1, every: int = 1, n_annotated: int | None = None
) -> MedakaSample:
    """The same fish as a stack of slices along ``axis``, keeping every ``every``-th slice.

    The slice axis moves to axis 0 (the other two keep their order), so with ``axis=1`` the
    slices are transverse sections along the fish's long axis, as a CT of a body is sliced.
    Keeping every ``every``-th slice (from slice 0) makes the slices ``every`` times further
    apart, as a scan with that slice spacing would sample them (thin slices, no averaging
    between them). The painted slices are chosen again along the new slice axis, spread over
    the slices that show organs, as :func:`make_medaka` chooses them.

    Parameters
    ----------
    sample:
        A sample from :func:`make_medaka`.
    axis:
        The axis (0, 1 or 2) the new stack runs along.
    every:
        Keep slices 0, ``every``, 2 ``every``, ... of that axis (1: all).
    n_annotated:
        Painted slices of the new stack (None: as many as ``sample`` has).

    Returns
    -------
    MedakaSample
        Image, labels, painted slices and voxel size ``scale`` (slice axis first) of the stack.

    Raises
    ------
    ValueError
        If ``axis`` is not 0, 1 or 2, ``every`` is below 1, fewer than ``MIN_SHAPE`` slices
        would be left, or ``n_annotated`` exceeds the slices that show organs.
    """
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    if every < 1:
        raise ValueError(f"every must be 1 or more, got {every}")
    kept = -(-sample.image.shape[axis] // every)
    if kept < MIN_SHAPE:
        raise ValueError(
            f"keeping every {every}th of {sample.image.shape[axis]} slices leaves {kept}, "
            f"fewer than {MIN_SHAPE}"
        )
    order = (axis, *(a for a in range(3) if a != axis))
    image = np.ascontiguousarray(np.moveaxis(sample.image, axis, 0)[::every])
    labels_full = np.ascontiguousarray(np.moveaxis(sample.labels_full, axis, 0)[::every])
    count = len(sample.annotated) if n_annotated is None else n_annotated
    annotated = _choose_slices(labels_full, count)
    labels_sparse = np.zeros_like(labels_full)
    labels_sparse[annotated] = labels_full[annotated]
    scale = tuple(float(sample.scale[a]) for a in order)
    scale = (scale[0] * every, scale[1], scale[2])
    return MedakaSample(
        image, labels_full, labels_sparse, annotated, dict(sample.class_names), scale
    )
