"""Training as a generator of TrainStep records: the loop, its records and schedule, the splits of
painted slices, the patch sampler, losses, objectives and validators, the teacher and its plan
from the data (fingerprint, plan).

May import: inference, models, evaluation and the core's foundations (config, device,
preprocess, progress).
"""

from __future__ import annotations

from .fingerprint import DataFingerprint, measure
from .loop import TrainingRun, preload_optimizer_modules
from .losses import ce_dice_loss, class_weights_from_labels, kd_loss
from .objectives import DiceValidator, SliceValidator, SupervisedObjective
from .plan import Decision, TeacherPlan, plan_for_data, plan_teacher
from .records import Objective, TrainStep, Validator
from .sampler import Augmentation, SliceSampler, augment
from .schedule import auto_steps, lr_at
from .splits import (
    MIN_SLICES_FOR_EARLY_STOPPING,
    Split,
    early_stopping_allowed,
    members_held_out_apart,
    split_painted_slices,
    stored_splits,
)
from .teacher import prepare_pair, resume_training, train_teacher

__all__ = [
    "MIN_SLICES_FOR_EARLY_STOPPING",
    "Augmentation",
    "augment",
    "DataFingerprint",
    "Decision",
    "DiceValidator",
    "Objective",
    "SliceSampler",
    "SliceValidator",
    "Split",
    "SupervisedObjective",
    "TrainStep",
    "TrainingRun",
    "Validator",
    "auto_steps",
    "ce_dice_loss",
    "class_weights_from_labels",
    "early_stopping_allowed",
    "kd_loss",
    "lr_at",
    "measure",
    "members_held_out_apart",
    "plan_for_data",
    "plan_teacher",
    "preload_optimizer_modules",
    "prepare_pair",
    "resume_training",
    "split_painted_slices",
    "stored_splits",
    "TeacherPlan",
    "train_teacher",
]
