"""Segmentation losses: class-weighted cross-entropy plus soft Dice, and the distillation term.

Targets are channel indices ``(B, H, W)`` int64 (see
:func:`~napari_distill.core.preprocess.labels_to_indices`) or, for :func:`dice_loss`, class
probabilities ``(B, K, H, W)``. Pixels can be left out with ``ignore_mask`` (True = ignore) or
weighted with ``pixel_weight``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F


def _one_hot(target: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, H, W)`` indices -> ``(B, K, H, W)``; soft ``(B, K, H, W)`` targets pass through."""
    if target.dim() == 4:
        return target.to(dtype)
    return F.one_hot(target, num_classes).permute(0, 3, 1, 2).to(dtype)


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    weight: torch.Tensor | None = None,
    ignore_mask: torch.Tensor | None = None,
    smooth: float = 1.0,
) -> torch.Tensor:
    """Soft Dice loss ``1 - Dice``, averaged over the classes present in the target.

    Dice is computed per class over the whole batch (not per image), so a class that fills a
    few pixels of one patch still gets a stable gradient.

    Parameters
    ----------
    logits:
        ``(B, K, H, W)``.
    target:
        ``(B, H, W)`` channel indices or ``(B, K, H, W)`` class probabilities.
    num_classes:
        ``K``.
    weight:
        Optional ``(K,)`` class weights for the mean over classes.
    ignore_mask:
        Optional ``(B, H, W)`` bool, True where the pixel does not count.
    smooth:
        Added to numerator and denominator (stabilises tiny classes).
    """
    probabilities = logits.float().softmax(dim=1)
    truth = _one_hot(target, num_classes, probabilities.dtype)
    if ignore_mask is not None:
        keep = (~ignore_mask).unsqueeze(1).to(probabilities.dtype)
        probabilities = probabilities * keep
        truth = truth * keep
    dims = (0, 2, 3)
    intersection = (probabilities * truth).sum(dims)
    truth_sum = truth.sum(dims)
    denominator = probabilities.sum(dims) + truth_sum
    dice = (2.0 * intersection + smooth) / (denominator + smooth)
    present = (truth_sum > 0).to(dice.dtype)
    if weight is not None:
        present = present * weight.to(dice.device, dice.dtype)
    if present.sum() <= 0:  # nothing labelled in this batch: no Dice signal
        return logits.sum() * 0.0
    return ((1.0 - dice) * present).sum() / present.sum()


def class_weights_from_labels(
    labels_list: Iterable[np.ndarray],
    num_classes: int,
    clip: tuple[float, float] = (0.1, 10.0),
) -> torch.Tensor:
    """Inverse square-root frequency weights per class, normalised to mean 1, clipped.

    Parameters
    ----------
    labels_list:
        Arrays of channel indices (``0 .. num_classes - 1``), e.g. the annotated slices.
    num_classes:
        ``K``.
    clip:
        Bounds applied after normalising, so a class of a few pixels cannot dominate.

    Returns
    -------
    torch.Tensor
        ``(K,)`` float32; classes that never occur get weight 1.
    """
    counts = np.zeros(num_classes, dtype=np.float64)
    for labels in labels_list:
        counts += np.bincount(np.asarray(labels).ravel(), minlength=num_classes)[:num_classes]
    weights = np.ones(num_classes, dtype=np.float64)
    present = counts > 0
    if present.any():
        frequency = counts[present] / counts.sum()
        raw = 1.0 / np.sqrt(frequency)
        weights[present] = np.clip(raw / raw.mean(), *clip)
    return torch.as_tensor(weights, dtype=torch.float32)


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | None = None,
    pixel_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy averaged with class and pixel weights (``sum(w * ce) / sum(w)``)."""
    per_pixel = F.cross_entropy(logits.float(), target, weight=class_weight, reduction="none")
    weights = class_weight[target] if class_weight is not None else torch.ones_like(per_pixel)
    if pixel_weight is not None:
        weights = weights * pixel_weight
        per_pixel = per_pixel * pixel_weight
    total = weights.sum()
    if total <= 0:
        return logits.sum() * 0.0
    return per_pixel.sum() / total


def ce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    class_weight: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    pixel_weight: torch.Tensor | None = None,
    ignore_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``CE + dice_weight * Dice`` and its terms (for the progress log).

    Parameters
    ----------
    logits:
        ``(B, K, H, W)``.
    target:
        ``(B, H, W)`` channel indices.
    num_classes:
        ``K``.
    class_weight:
        Optional ``(K,)`` weights (cross-entropy and the Dice mean).
    dice_weight:
        Weight of the Dice term; 0 skips it.
    pixel_weight:
        Optional ``(B, H, W)`` per-pixel weights for the cross-entropy (0 = ignore).
    ignore_mask:
        Optional ``(B, H, W)`` bool, True where the pixel does not count in either term.

    Returns
    -------
    loss, terms
        The scalar loss (with gradient) and ``{"ce": ..., "dice": ...}`` as floats.
    """
    if ignore_mask is not None:
        keep = (~ignore_mask).float()
        pixel_weight = keep if pixel_weight is None else pixel_weight * keep
    ce = weighted_cross_entropy(logits, target, class_weight, pixel_weight)
    terms = {"ce": float(ce.detach())}
    if dice_weight <= 0:
        return ce, terms
    dice = dice_loss(logits, target, num_classes, weight=class_weight, ignore_mask=ignore_mask)
    terms["dice"] = float(dice.detach())
    return ce + dice_weight * dice, terms


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``T^2 * KL(p_t || p_s)`` per pixel, averaged over the (masked) pixels.

    Parameters
    ----------
    student_logits, teacher_logits:
        ``(B, K, H, W)``; the teacher's are detached here (no gradient flows into them).
    temperature:
        ``T > 0``; ``p = softmax(z / T)``. The ``T^2`` factor keeps the gradient's size
        independent of ``T`` (Hinton et al., 2015).
    mask:
        Optional ``(B, H, W)`` weights (bool or float; 0 = the pixel does not count).

    Returns
    -------
    torch.Tensor
        A scalar; 0 (with a gradient path) when the mask is empty.
    """
    if temperature <= 0:
        raise ValueError(f"the temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    per_pixel = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1) * temperature**2
    if mask is None:
        return per_pixel.mean()
    weight = mask.to(per_pixel.dtype)
    total = weight.sum()
    if total <= 0:
        return student_logits.sum() * 0.0
    return (per_pixel * weight).sum() / total
