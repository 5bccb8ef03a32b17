"""Metrics (Dice, IoU, AJI, Spearman) and labels from probabilities: clean-up and instances.

May import: numpy, scipy, scikit-image, and the core's config and preprocess.
"""

from __future__ import annotations

from .instances import (
    apply_instance_config,
    check_cleanup_classes,
    clean_semantic,
    describe_cleanup,
)
from .metrics import aji, evaluate_semantic, f1_at_iou, iou_per_class, mean_dice, mean_iou, spearman

__all__ = [
    "aji",
    "apply_instance_config",
    "check_cleanup_classes",
    "clean_semantic",
    "describe_cleanup",
    "evaluate_semantic",
    "f1_at_iou",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "spearman",
]
