"""Prediction as a generator of progress records: tiled, cropped to tissue, memory-mapped; a
checkpoint's prediction, a views teacher's along three axes; labels propagated from the
painted slices without learning (nearest painted slice, optical flow) and their
leave-one-painted-slice-out estimate; the teacher against propagation on the painted slices
its members held out.

May import: models, evaluation (metrics, the leave-one-out scorer) and the core's foundations
(config, device, preprocess, progress).
"""

from __future__ import annotations

from .bundle import predict_bundle
from .comparison import ComparisonProgress, compare_with_propagation
from .flow import NeighbourFlows
from .predict import Prediction, PredictProgress, predict_slice_probabilities, predict_stack
from .propagation import Propagation, PropagationProgress, propagate, propagation_leave_one_out
from .views import check_volume, context_margin, row_bands, view_of, views_probabilities

__all__ = [
    "ComparisonProgress",
    "NeighbourFlows",
    "PredictProgress",
    "Prediction",
    "Propagation",
    "PropagationProgress",
    "check_volume",
    "compare_with_propagation",
    "context_margin",
    "predict_bundle",
    "predict_slice_probabilities",
    "predict_stack",
    "propagate",
    "propagation_leave_one_out",
    "row_bands",
    "view_of",
    "views_probabilities",
]
