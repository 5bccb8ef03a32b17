"""Every hyperparameter of napari-distill, as frozen dataclasses with defaults and units:
the network's shape in :mod:`.model`, how models train, predict and clean up in :mod:`.runs`.

A config is stored in checkpoints as a plain dict (``dataclasses.asdict``) so that checkpoints
load with ``torch.load(weights_only=True)``; ``from_dict`` rebuilds it and ignores unknown keys
so that older checkpoints keep loading after a setting is added.
"""

from __future__ import annotations

from .common import MAX_DOWNSAMPLE, MAX_MEMBERS, VIEW_AXES, from_dict, to_dict
from .model import ModelConfig
from .runs import (
    InstanceConfig,
    KDConfig,
    PredictConfig,
    PropagationConfig,
    QualityConfig,
    TrainConfig,
)

__all__ = [
    "MAX_DOWNSAMPLE",
    "MAX_MEMBERS",
    "VIEW_AXES",
    "InstanceConfig",
    "KDConfig",
    "ModelConfig",
    "PredictConfig",
    "PropagationConfig",
    "QualityConfig",
    "TrainConfig",
    "from_dict",
    "to_dict",
]
