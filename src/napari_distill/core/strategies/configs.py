"""Settings of the ``mixed`` and ``mutual`` strategies (methods 3 and 4), as frozen dataclasses.

The Student widget builds its form from these fields: ``metadata["label"]`` names a row and
``metadata["help"]`` is its tooltip, in the words of someone who paints, not of the papers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..samples import DEFAULT_BACKGROUND_LABEL


@dataclass(frozen=True)
class MixedConfig:
    """Strategy ``mixed``: L = teacher CE on full masks + student partial CE on weak labels
    + lambda_kl * KL(teacher || student) + lambda_h * H(student) on the weakly labelled slices
    + lambda_tag * (top-k pooled BCE against the slice tags) on one whole tagged slice a step.
    """

    lambda_kl: float = field(
        default=1.0,
        metadata={
            "label": "KL weight",
            "min": 0.0,
            "max": 100.0,
            "help": "How closely the student branch follows the teacher branch (which learns "
            "from your full masks) on the slices that only have scribbles or points. 0: the "
            "student learns from the scribbles alone.",
        },
    )
    lambda_h: float = field(
        default=0.1,
        metadata={
            "label": "Entropy weight",
            "min": 0.0,
            "max": 10.0,
            "help": "How strongly the student branch is pushed to be sure of every pixel on "
            "the weakly labelled slices (entropy minimisation). Too much makes it sure of "
            "wrong answers; the KL term holds it back.",
        },
    )
    point_radius: float = field(
        default=3.0,
        metadata={
            "label": "Point radius (pixels)",
            "min": 0.0,
            "max": 50.0,
            "help": "Each clicked point counts as a disk of this radius of its class (a click "
            "is rarely exactly central, so keep it smaller than the structures).",
        },
    )
    background_label: int = field(
        default=DEFAULT_BACKGROUND_LABEL,
        metadata={
            "label": "Background label in scribbles",
            "min": 1,
            "max": 65535,
            "help": "The label you paint background with in the weak labels layer (0 there "
            "means 'not painted, unknown', not background).",
        },
    )
    lambda_tag: float = field(
        default=0.1,
        metadata={
            "label": "Slice tag weight",
            "min": 0.0,
            "max": 10.0,
            "help": "How much the slice tags count (which classes a slice contains; the others "
            "are absent): the student branch is pushed to find each listed class somewhere on "
            "the slice and no unlisted one. 0: tags are ignored.",
        },
    )
    tag_top_share: float = field(
        default=0.01,
        metadata={
            "label": "Smallest structure share",
            "min": 0.0001,
            "max": 1.0,
            "help": "About the smallest share of a slice that one tagged class covers (0.01 = "
            "1 %). A present class must be confident on at least this many pixels, an absent "
            "one on none.",
        },
    )
    full_share: float = field(
        default=0.5,
        metadata={
            "label": "Full-mask share",
            "min": 0.0,
            "max": 1.0,
            "help": "Share of the training patches drawn from the fully painted slices; the "
            "rest come from the slices with scribbles or points. Used when there are both.",
        },
    )
    predict_with: Literal["student", "teacher"] = field(
        default="student",
        metadata={
            "label": "Predict with",
            "help": "Which branch labels the image: the student (learns from full masks, "
            "weak labels and the teacher; usually better) or the teacher (full masks only).",
        },
    )
    init_from_teacher: bool = field(
        default=True,
        metadata={
            "label": "Start from the teacher's weights",
            "help": "Start both branches from the teacher's network (faster); off trains "
            "from scratch. Ignored when the teacher has another shape.",
        },
    )

    def __post_init__(self) -> None:
        for name in ("lambda_kl", "lambda_h", "point_radius", "lambda_tag"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 < self.tag_top_share <= 1.0:
            raise ValueError(f"tag_top_share must be in (0, 1], got {self.tag_top_share}")
        if not 0.0 <= self.full_share <= 1.0:
            raise ValueError(f"full_share must be in [0, 1], got {self.full_share}")
        if self.background_label < 1:
            raise ValueError("the background label of weak labels must be >= 1 (0 is unknown)")
        if self.predict_with not in ("student", "teacher"):
            raise ValueError(
                f"predict_with must be 'student' or 'teacher', got {self.predict_with!r}"
            )


@dataclass(frozen=True)
class MutualConfig:
    """Strategy ``mutual``: two networks, per-pixel co-teaching on the noisy masks plus KL from
    each network's peer on the peer's most reliable pixels, ramped up."""

    # 0.2: co-teaching's customary forget rate when the noise is unknown; hurried outlines
    # are mostly wrong near borders, a minority of what is painted.
    noise_rate: float = field(
        default=0.2,
        metadata={
            "label": "Wrong share of your painting",
            "min": 0.0,
            "max": 0.9,
            "help": "About what share of your painted pixels is wrong? (Outlines painted too "
            "wide, too narrow or shifted, missed or extra structures.) Each network then "
            "ignores that share of pixels, the ones its partner finds hardest. If you do not "
            "know, keep 0.2.",
        },
    )
    lambda_kd: float = field(
        default=1.0,
        metadata={
            "label": "Mutual distillation weight",
            "min": 0.0,
            "max": 100.0,
            "help": "How much each network learns from its partner's most reliable pixels "
            "(after the ramp-up). 0: co-teaching alone.",
        },
    )
    ramp_share: float = field(
        default=0.3,
        metadata={
            "label": "Ramp-up share",
            "min": 0.01,
            "max": 1.0,
            "help": "Share of the training over which the ignored share grows from 0 to the "
            "wrong share, and mutual distillation from nothing to full weight.",
        },
    )
    reliability_dropout: float = field(
        default=0.3,
        metadata={
            "label": "Reliability dropout",
            "min": 0.0,
            "max": 0.9,
            "help": "Dropout of the partner while it judges which of its pixels are reliable "
            "(stronger than in training: pixels whose prediction survives it are trusted).",
        },
    )
    reliability_noise: float = field(
        default=0.02,
        metadata={
            "label": "Reliability noise",
            "min": 0.0,
            "max": 1.0,
            "help": "Gaussian noise (in normalised intensity) added, with flips, to the image "
            "when judging reliability.",
        },
    )
    reliability_rotation: float = field(
        default=60.0,
        metadata={
            "label": "Reliability rotation (degrees)",
            "min": 0.0,
            "max": 180.0,
            "help": "Largest rotation of the image when judging reliability, once the "
            "flips-only phase is over: a pixel whose answer survives turning the image is "
            "trusted. 0: no rotation.",
        },
    )
    reliability_zoom: float = field(
        default=2.0,
        metadata={
            "label": "Reliability zoom (at most)",
            "min": 1.0,
            "max": 4.0,
            "help": "Largest magnification of the image when judging reliability (a factor "
            "between 1 and this). 1: no zoom.",
        },
    )
    reliability_elastic: float = field(
        default=3.0,
        metadata={
            "label": "Reliability elastic (pixels)",
            "min": 0.0,
            "max": 20.0,
            "help": "Typical size, in pixels, of the smooth bending of the image when judging "
            "reliability. 0: no bending.",
        },
    )
    warp_after: float = field(
        default=0.3,
        metadata={
            "label": "Rotate, zoom and bend after",
            "min": 0.0,
            "max": 1.0,
            "help": "Share of the training during which reliability is judged with flips and "
            "noise only; rotation, zoom and bending join after it (by default when the "
            "ramp-up ends, once the networks predict something worth judging).",
        },
    )
    predict_with: Literal["average", "first", "second"] = field(
        default="average",
        metadata={
            "label": "Predict with",
            "help": "Which network labels the image: the average of the two (default), or "
            "either one.",
        },
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_rate < 1.0:
            raise ValueError(f"noise_rate must be in [0, 1), got {self.noise_rate}")
        if self.lambda_kd < 0:
            raise ValueError(f"lambda_kd must be >= 0, got {self.lambda_kd}")
        if not 0.0 < self.ramp_share <= 1.0:
            raise ValueError(f"ramp_share must be in (0, 1], got {self.ramp_share}")
        if not 0.0 <= self.reliability_dropout < 1.0:
            raise ValueError(
                f"reliability_dropout must be in [0, 1), got {self.reliability_dropout}"
            )
        if not 0.0 <= self.reliability_rotation <= 180.0:
            raise ValueError(
                f"reliability_rotation must be in [0, 180], got {self.reliability_rotation}"
            )
        if self.reliability_zoom < 1.0:
            raise ValueError(f"reliability_zoom must be >= 1, got {self.reliability_zoom}")
        if self.reliability_elastic < 0:
            raise ValueError(f"reliability_elastic must be >= 0, got {self.reliability_elastic}")
        if not 0.0 <= self.warp_after <= 1.0:
            raise ValueError(f"warp_after must be in [0, 1], got {self.warp_after}")
        if self.predict_with not in ("average", "first", "second"):
            raise ValueError(
                f"predict_with must be average, first or second, got {self.predict_with!r}"
            )
