"""Predict with a checkpoint: one network or an ensemble slice by slice, a views teacher along
its three axes."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ..models import ModelBundle
from .predict import Prediction, PredictProgress, predict_stack
from .views import predict_views


def predict_bundle(
    bundle: ModelBundle, image: np.ndarray, **kwargs: Any
) -> Generator[PredictProgress, None, Prediction]:
    """:func:`predict_stack` with the model, normalisation, classes and context of a checkpoint.

    Any other keyword argument of :func:`predict_stack` (``config``, ``device``, ``slices``,
    ``keep_probabilities``, ``out_dir``, ``rgb``) is passed on. A teacher whose members see
    the volume along its three axes (``ModelConfig.views``) is predicted along each by
    :func:`~napari_distill.core.inference.views.predict_views`.
    """
    if bundle.model_config.views:
        return predict_views(bundle, image, **kwargs)
    return predict_stack(
        bundle.model,
        image,
        normalization=bundle.normalization,
        class_ids=bundle.class_ids,
        context_slices=bundle.model_config.context_slices,
        **kwargs,
    )
