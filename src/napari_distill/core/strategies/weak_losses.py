"""The loss terms of methods 3 and 4: entropy, partial cross-entropy, KL, and the pixel
selections of co-teaching and reliable distillation. Pure functions of tensors, tested on
hand-computed values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..training import kd_loss


def entropy_loss(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Shannon entropy ``-sum_c p log p`` of ``softmax(logits)`` per pixel, mean over the
    (masked) pixels; ``logits`` ``(B, K, H, W)``, ``mask`` ``(B, H, W)`` (0 = not counted)."""
    log_p = F.log_softmax(logits.float(), dim=1)
    per_pixel = -(log_p.exp() * log_p).sum(dim=1)
    return _masked_mean(per_pixel, mask, logits)


def kl_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``KL(p_teacher || p_student)`` per pixel (temperature 1), mean over the (masked)
    pixels; the teacher's logits are detached (no gradient reaches the target)."""
    return kd_loss(student_logits, teacher_logits, 1.0, mask)


def partial_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    known: torch.Tensor,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy on the labelled pixels only (``known`` True), class-weighted mean.

    Unknown pixels contribute nothing, whatever their ``target`` value; 0 (with a gradient
    path) when no pixel is known.
    """
    per_pixel = F.cross_entropy(logits.float(), target, weight=class_weight, reduction="none")
    weight = known.to(per_pixel.dtype)
    if class_weight is not None:
        weight = weight * class_weight.to(per_pixel.device)[target]
    total = weight.sum()
    if total <= 0:
        return logits.sum() * 0.0
    return (per_pixel * weight).sum() / total


def _masked_mean(
    values: torch.Tensor, mask: torch.Tensor | None, like: torch.Tensor
) -> torch.Tensor:
    if mask is None:
        return values.mean()
    weight = mask.to(values.dtype)
    total = weight.sum()
    if total <= 0:
        return like.sum() * 0.0
    return (values * weight).sum() / total


def smallest_share(values: torch.Tensor, share: float) -> torch.Tensor:
    """A bool mask of exactly ``round(share * n)`` of the ``n`` entries of ``values``, those
    with the smallest values (ties broken by position); the same shape as ``values``."""
    flat = values.detach().reshape(-1)
    count = int(round(min(max(share, 0.0), 1.0) * flat.numel()))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if count > 0:
        keep[torch.argsort(flat, stable=True)[:count]] = True
    return keep.reshape(values.shape)


def smallest_share_per_class(
    values: torch.Tensor, target: torch.Tensor, share: float, num_classes: int
) -> torch.Tensor:
    """:func:`smallest_share` within each class of ``target`` (same shape as ``values``):
    exactly ``round(share * n_c)`` of the ``n_c`` pixels labelled ``c``, for every class.

    Selecting over all pixels together would drop the rare classes first (their pixels have
    the larger losses), so a network would learn less of the small structures the more noise
    it expects.
    """
    keep = torch.zeros_like(values, dtype=torch.bool)
    for c in range(num_classes):
        members = target == c
        if bool(members.any()):
            chosen = smallest_share(values[members], share)
            keep[members] = chosen
    return keep


def ramp(step: int, total_steps: int, ramp_share: float) -> float:
    """Progress through the ramp-up, from 0 at the first step to 1 after ``ramp_share`` of
    the steps (RMD's ``e / 10``, with training steps for epochs)."""
    length = max(1.0, ramp_share * total_steps)
    return min(1.0, step / length)


def rampup_weight(progress: float) -> float:
    """``exp(-5 (1 - t)^2)``: METHODS.md's sigmoid-shaped ramp-up, from ~0.007 to 1."""
    return math.exp(-5.0 * (1.0 - min(max(progress, 0.0), 1.0)) ** 2)


def reliability(probabilities: torch.Tensor, augmented_back: torch.Tensor) -> torch.Tensor:
    """Disagreement ``sum_c (f(aug(x)) - aug(f(x)))^2`` per pixel, both in the original frame:
    ``augmented_back`` is ``f(aug(x))`` mapped back. Low values are reliable pixels."""
    return (augmented_back.float() - probabilities.float()).pow(2).sum(dim=1)
