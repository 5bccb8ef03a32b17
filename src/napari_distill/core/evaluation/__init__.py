"""Metrics (Dice, IoU, AJI, Spearman; overlap-aware cell scores), the leave-one-painted-slice-out
scorer (any method that predicts a held-out slice from the others), two sources compared per
class on held-out slices and combined, and labels from probabilities: clean-up and instances.

May import: numpy, scipy, scikit-image, and the core's config and preprocess.
"""

from __future__ import annotations

from .cells import CellScores, score_cells, score_nuclei
from .comparison import (
    ClassChoice,
    Comparison,
    HeldOut,
    combine_probabilities,
    compare_held_out,
    no_comparison,
)
from .instances import (
    apply_instance_config,
    cells_from_semantic,
    check_cleanup_classes,
    clean_semantic,
    describe_cleanup,
)
from .leave_one_out import (
    HeldOutPredictor,
    LeaveOneOutProgress,
    LeaveOneOutScore,
    held_out_candidates,
    leave_one_out,
)
from .metrics import aji, evaluate_semantic, f1_at_iou, iou_per_class, mean_dice, mean_iou, spearman

__all__ = [
    "ClassChoice",
    "Comparison",
    "HeldOut",
    "CellScores",
    "score_cells",
    "score_nuclei",
    "HeldOutPredictor",
    "LeaveOneOutProgress",
    "LeaveOneOutScore",
    "aji",
    "apply_instance_config",
    "cells_from_semantic",
    "check_cleanup_classes",
    "clean_semantic",
    "combine_probabilities",
    "compare_held_out",
    "describe_cleanup",
    "evaluate_semantic",
    "f1_at_iou",
    "held_out_candidates",
    "iou_per_class",
    "leave_one_out",
    "mean_dice",
    "mean_iou",
    "no_comparison",
    "spearman",
]
