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


# (fewest, most) steps of an automatic budget, by device kind. A network trained from scratch
# on a few slices keeps improving for thousands of steps (docs/benchmarks.md, "Teacher
# quality": 6 annotated Medaka slices gave mIoU 0.67 after 500 steps and 0.73-0.80 after
# 2,000); one fine-tuned from a trained network (a student from its teacher) needs far fewer.
FROM_SCRATCH_STEPS = {"cpu": (2000, 4000), "accelerator": (3000, 8000)}
FINE_TUNING_STEPS = {"cpu": (500, 1000), "accelerator": (1000, 4000)}


def auto_steps(
    n_annotated_pixels: int,
    device: torch.device | str,
    batch_size: int = 8,
    patch_size: int = 96,
    passes: float = 150.0,
    from_scratch: bool = True,
) -> int:
    """A step budget for ``steps=None``: about ``passes`` looks at every annotated pixel.

    Bounded per device (:data:`FROM_SCRATCH_STEPS` for a new network, e.g. 2,000-4,000 on a
    CPU; :data:`FINE_TUNING_STEPS` for one that starts from trained weights): even one
    annotated slice needs a couple of thousand steps for a new network to converge, and a CPU
    run must end in minutes, not hours.
    """
    pixels_per_step = max(1, batch_size * patch_size * patch_size)
    wanted = math.ceil(passes * max(0, n_annotated_pixels) / pixels_per_step)
    bounds = FROM_SCRATCH_STEPS if from_scratch else FINE_TUNING_STEPS
    low, high = bounds["cpu" if torch.device(device).type == "cpu" else "accelerator"]
    return int(min(high, max(low, wanted)))
