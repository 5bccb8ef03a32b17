"""Settings of the cell strategy ``mean-teacher`` (MMT-PSM, METHODS.md method 2), a frozen
dataclass: the paper's defaults, and a tooltip (``metadata["help"]``) for every field, in the
words of someone who paints cells rather than of the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def _setting(default, label: str, help_text: str, low=None, high=None):
    meta = {"label": label, "help": help_text}
    if low is not None:
        meta.update(min=low, max=high)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class MeanTeacherConfig:
    """L = L_sup + lambda(t) * (psm_weight * L_psm + mgd_weight * L_mgd); teacher = EMA."""

    ema_decay: float = _setting(
        0.99, "Teacher memory", "How slowly the teacher follows the student: it is the running "
        "average of the student with weight min(1 - 1/(step + 1), this), steps counted from the "
        "end of the warm-up.", 0.0, 0.9999,
    )  # fmt: skip
    warmup_steps: int = _setting(
        0, "Warm-up steps", "Steps of learning from your painted fields alone before the "
        "unpainted fields count. 0 by default: the student starts from the teacher, which "
        "already learnt your painted fields alone (that is the warm-up).", 0, 100000,
    )  # fmt: skip
    rampup_steps: int = _setting(
        100, "Ramp-up steps", "Steps over which the weight of the unpainted fields grows "
        "smoothly (exp(-5 (1 - t)^2)) to its full value (at most the run's length).", 0, 100000,
    )  # fmt: skip
    consistency: float = _setting(
        5.0, "Unpainted fields' weight", "Full weight (lambda) of what the student learns "
        "from the teacher on the unpainted fields, against 1 for your painting.", 0.0, 100.0,
    )  # fmt: skip
    psm_weight: float = _setting(
        0.2, "Sample mining weight", "Weight of learning the teacher's answer on the mined "
        "pixels (all foreground, plus the background the teacher is least sure of).", 0.0,
        10.0,
    )  # fmt: skip
    mgd_weight: float = _setting(
        1.0, "Feature weight", "Weight of copying the teacher's inner features inside the "
        "cells and nuclei it sees (mask-guided distillation).", 0.0, 10.0,
    )  # fmt: skip
    temperature: float = _setting(
        0.5, "Sharpening", "Temperature of the teacher's averaged answer: below 1 makes it "
        "more decided.", 0.05, 5.0,
    )  # fmt: skip
    jitters: int = _setting(
        2, "Jitters", "How many brightness / colour jitters of each unpainted patch the "
        "teacher sees (each also mirrored when Mirror is on).", 1, 8,
    )  # fmt: skip
    flip: bool = _setting(True, "Mirror", "Also show the teacher each view mirrored.")
    jitter: float = _setting(
        0.15, "Jitter strength", "How much each channel's brightness and offset vary between "
        "views (a share of the field's intensity range; grey and colour alike).", 0.0, 1.0,
    )  # fmt: skip
    background_ratio: float = _setting(
        0.5, "Mined background share", "At most this many background pixels per foreground "
        "pixel are learnt: those whose answer changes most between the views.", 0.0, 10.0,
    )  # fmt: skip
    mined_weight: float = _setting(
        1.5, "Mined background weight", "Weight of those background pixels (foreground "
        "pixels weigh 1).", 0.0, 10.0,
    )  # fmt: skip
    mining: bool = _setting(
        True, "Mine samples", "Off: learn the teacher's answer on every pixel (ablation).",
    )  # fmt: skip
    mask_guided: bool = _setting(
        True, "Mask-guided features", "Off: copy features everywhere, not only inside the "
        "teacher's cells and nuclei (ablation).",
    )  # fmt: skip
    unlabeled_patches: int = _setting(
        2, "Unpainted patches per step", "Nucleus patches of unpainted fields per step.", 1, 64
    )  # fmt: skip
    unlabeled_windows: int = _setting(
        4, "Unpainted cells per step", "Cell windows of unpainted fields per step (around "
        "the nuclei the teacher finds).", 1, 256,
    )  # fmt: skip
    refresh_every: int = _setting(
        50, "Refresh nuclei every", "Steps between the teacher's new look for nuclei on the "
        "unpainted fields.", 1, 100000,
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.temperature <= 0 or self.jitters < 1 or self.refresh_every < 1:
            raise ValueError(f"invalid mean-teacher settings: {self}")
