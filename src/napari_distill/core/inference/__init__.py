"""Prediction as a generator of progress records: tiled, cropped to tissue, memory-mapped; a
checkpoint's prediction, a views teacher's along three axes.

May import: models and the core's foundations (config, device, preprocess, progress).
"""

from __future__ import annotations

from .bundle import predict_bundle
from .predict import Prediction, PredictProgress, predict_slice_probabilities, predict_stack
from .views import check_volume, context_margin, row_bands, view_of, views_probabilities

__all__ = [
    "PredictProgress",
    "Prediction",
    "check_volume",
    "context_margin",
    "predict_bundle",
    "predict_slice_probabilities",
    "predict_stack",
    "row_bands",
    "view_of",
    "views_probabilities",
]
