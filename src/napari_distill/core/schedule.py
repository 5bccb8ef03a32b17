"""How long a run trains and at which learning rate: the step budget for ``steps=None``
and the warm-up + cosine learning-rate schedule, shared by the teacher and the students.
"""

from __future__ import annotations

import math

import torch


def lr_at(
    step: int, total: int, base_lr: float, warmup_fraction: float = 0.05, min_ratio: float = 0.01
) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, then cosine decay.

    The warm-up lasts ``warmup_fraction`` of the run (at least 1, at most 100 steps); the decay
    ends at ``min_ratio * base_lr``.
    """
    warmup = max(1, min(100, int(warmup_fraction * total)))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    low = base_lr * min_ratio
    return low + 0.5 * (base_lr - low) * (1.0 + math.cos(math.pi * progress))


def auto_steps(
    n_annotated_pixels: int,
    device: torch.device | str,
    batch_size: int = 8,
    patch_size: int = 96,
    passes: float = 150.0,
) -> int:
    """A step budget for ``steps=None``: about ``passes`` looks at every annotated pixel.

    Bounded per device (CPU 500-1000, GPU 1000-4000 steps): even one annotated slice needs a
    few hundred steps for the network to converge, and a CPU run must end in minutes. Early
    stopping usually ends the run sooner.
    """
    pixels_per_step = max(1, batch_size * patch_size * patch_size)
    wanted = math.ceil(passes * max(0, n_annotated_pixels) / pixels_per_step)
    low, high = (500, 1000) if torch.device(device).type == "cpu" else (1000, 4000)
    return int(min(high, max(low, wanted)))
