"""Networks (the 2D U-Net family, ensembles of them) and checkpoints (one dict: weights, configs,
classes, normalisation, step).

May import: torch, and napari_distill.core's config and preprocess.
"""

from __future__ import annotations

from .branched import STUDENT_BRANCH, TEACHER_BRANCH, BranchedUNet, BranchView
from .checkpoint import (
    CheckpointError,
    ModelBundle,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from .networks import (
    MIN_PROBABILITY,
    MemberMean,
    UNet,
    build_model,
    count_parameters,
    enable_dropout,
    ensemble_members,
    norm_groups,
    slice_members,
)

__all__ = [
    "MIN_PROBABILITY",
    "STUDENT_BRANCH",
    "TEACHER_BRANCH",
    "BranchView",
    "BranchedUNet",
    "CheckpointError",
    "MemberMean",
    "ModelBundle",
    "UNet",
    "build_model",
    "count_parameters",
    "enable_dropout",
    "ensemble_members",
    "load_checkpoint",
    "norm_groups",
    "read_checkpoint",
    "save_checkpoint",
    "slice_members",
]
