"""The quality classifier (method 1): pseudo-labels of varied quality, the fit, scores per slice
and the user's selection of slices.

May import: training, inference, models, evaluation and the core's foundations.
"""

from __future__ import annotations

from .fit import fit_quality, holdout_split
from .model import QualityFitReport, QualityModel, QualityNet, load_quality, save_quality
from .project_selection import ProjectSelection
from .scoring import SliceScores, pseudo_label_confidence, score_slices
from .selection import Selection, SelectionFileError
from .snapshots import SnapshotRecorder
from .variants import VariantProgress, quality_input, slice_iou

__all__ = [
    "ProjectSelection",
    "QualityFitReport",
    "QualityModel",
    "QualityNet",
    "Selection",
    "SelectionFileError",
    "SliceScores",
    "SnapshotRecorder",
    "VariantProgress",
    "fit_quality",
    "holdout_split",
    "load_quality",
    "pseudo_label_confidence",
    "quality_input",
    "save_quality",
    "score_slices",
    "slice_iou",
]
