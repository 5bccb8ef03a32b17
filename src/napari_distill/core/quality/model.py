"""The quality classifier's network, its fitted form and its checkpoints.

:class:`QualityNet` is a small CNN over :func:`~napari_distill.core.quality.quality_input`
(the slice, the teacher's probabilities and a validity mask, as a square); its sigmoid output is
the predicted IoU of the teacher's pseudo-label. :class:`QualityModel` is a fitted classifier
with what it needs to score new slices; :func:`save_quality` and :func:`load_quality` write and
read it as a ``"quality"`` checkpoint through :mod:`napari_distill.core.models.checkpoint` (safe
``weights_only`` loading, atomic saving).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import ModelConfig, QualityConfig, from_dict, to_dict
from ..models import CheckpointError, ModelBundle, norm_groups, read_checkpoint, save_checkpoint
from ..preprocess import Normalization

QUALITY_KIND = "quality"
NET_LEVELS = 4  # resolution levels of QualityNet (input_size / 8 at the last one)


class QualityNet(nn.Module):
    """A small CNN: ``(B, C_in, S, S)`` -> logits ``(B, 1 + class_outputs)``.

    Four levels of two 3x3 convolutions (GroupNorm, ReLU), max-pooled between levels; the last
    level's average and maximum over space feed a two-layer head. Output 0 is the slice's
    predicted IoU (as a logit), outputs ``1..`` the per-class ones when ``class_outputs > 0``.
    """

    def __init__(
        self,
        in_channels: int,
        base_channels: int = 16,
        class_outputs: int = 0,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.class_outputs = class_outputs
        layers: list[nn.Module] = []
        channels = in_channels
        for level in range(NET_LEVELS):
            width = base_channels * 2**level
            if level > 0:
                layers.append(nn.MaxPool2d(2))
            for conv_in in (channels, width):
                layers += [
                    nn.Conv2d(conv_in, width, 3, padding=1, bias=False),
                    nn.GroupNorm(norm_groups(width), width),
                    nn.ReLU(inplace=True),
                ]
            channels = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(2 * channels, channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(channels, 1 + class_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.features(x)
        pooled = torch.cat((maps.mean(dim=(2, 3)), maps.amax(dim=(2, 3))), dim=1)
        return self.head(pooled)


@dataclass(frozen=True)
class QualityFitReport:
    """How well the classifier ranks pseudo-labels of slices it did not train on.

    Attributes
    ----------
    spearman:
        Rank correlation between predicted and true IoU over the held-out slices' predictions
        (NaN when there are too few, e.g. fewer than 3 annotated slices).
    mean_abs_error:
        Mean ``|predicted - true|`` IoU over the same predictions (NaN likewise).
    train_slices, holdout_slices:
        The annotated slices trained on and held out.
    n_train, n_holdout:
        Predictions (slice x source) in each part.
    target_range:
        Lowest and highest true IoU among all predictions made.
    holdout_true, holdout_predicted:
        The held-out pairs themselves (for a scatter plot).
    """

    spearman: float
    mean_abs_error: float
    train_slices: tuple[int, ...]
    holdout_slices: tuple[int, ...]
    n_train: int
    n_holdout: int
    target_range: tuple[float, float]
    holdout_true: tuple[float, ...] = ()
    holdout_predicted: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> QualityFitReport:
        return from_dict(cls, dict(values))


@dataclass
class QualityModel:
    """A fitted quality classifier and what it needs to score new slices.

    ``class_ids``, ``n_colours`` and ``context_slices`` describe the teacher it was fitted with
    (its probability channels, the image's colours, the 2.5D context); ``normalization`` is
    that teacher's intensity window.
    """

    net: QualityNet
    config: QualityConfig
    class_ids: tuple[int, ...]
    n_colours: int
    normalization: Normalization
    context_slices: int = 0
    class_names: dict[int, str] = field(default_factory=dict)
    report: QualityFitReport | None = None
    step: int = 0

    def predict(
        self, inputs: np.ndarray, device: torch.device | str = "cpu", batch_size: int = 16
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores ``(M,)`` and per-class scores ``(M, K-1)`` (None without that head) of
        classifier inputs ``(M, C + K + 1, S, S)``."""
        device = torch.device(device)
        net = self.net.to(device).eval()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                batch = torch.from_numpy(np.asarray(inputs[start : start + batch_size]))
                outputs.append(torch.sigmoid(net(batch.float().to(device))).cpu().numpy())
        out = np.concatenate(outputs) if outputs else np.zeros((0, 1 + self.net.class_outputs))
        return out[:, 0], (out[:, 1:] if self.net.class_outputs else None)


# ------------------------------------------------------------------------------ checkpoints
def quality_bundle(model: QualityModel) -> ModelBundle:
    """The :class:`ModelBundle` a quality checkpoint is written from."""
    net = model.net
    return ModelBundle(
        model=net,
        # The quality net is not a U-Net; this records its input width and base width so the
        # common checkpoint keys stay meaningful. Its own shape is in ``extra["quality_net"]``.
        model_config=ModelConfig(
            in_channels=net.in_channels,
            num_classes=len(model.class_ids),
            base_channels=net.base_channels,
            depth=NET_LEVELS,
            dropout=0.0,
            context_slices=model.context_slices,
        ),
        class_ids=model.class_ids,
        class_names=dict(model.class_names),
        normalization=model.normalization,
        step=model.step,
        kind=QUALITY_KIND,
        extra={
            "quality_config": to_dict(model.config),
            "quality_net": {
                "in_channels": net.in_channels,
                "base_channels": net.base_channels,
                "class_outputs": net.class_outputs,
            },
            "n_colours": model.n_colours,
            "report": None if model.report is None else model.report.to_dict(),
        },
    )


def save_quality(path: str | os.PathLike[str], model: QualityModel) -> Path:
    """Write ``model`` as an atomic ``"quality"`` checkpoint (see :mod:`.checkpoint`)."""
    return save_checkpoint(path, quality_bundle(model))


def load_quality(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> QualityModel:
    """Load a quality classifier safely (``weights_only``).

    Raises
    ------
    CheckpointError
        Missing, corrupt, unsafe or foreign file, or a checkpoint of another kind (e.g. a
        teacher given where the quality classifier is expected).
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, device)
    if checkpoint["kind"] != QUALITY_KIND:
        raise CheckpointError(
            f"{path} is a {checkpoint['kind']} checkpoint, not a quality classifier: give the "
            "file written by quality-fit"
        )
    extra = checkpoint.get("extra") or {}
    try:
        shape = extra["quality_net"]
        net = QualityNet(
            int(shape["in_channels"]), int(shape["base_channels"]), int(shape["class_outputs"])
        )
        net.load_state_dict(checkpoint["state_dict"])
        config = from_dict(QualityConfig, extra.get("quality_config") or {})
        raw_report = extra.get("report")
        model_config = checkpoint["model_config"]
        model = QualityModel(
            net=net.to(device).eval(),
            config=config,
            class_ids=tuple(int(c) for c in checkpoint["class_ids"]),
            n_colours=int(extra["n_colours"]),
            normalization=Normalization.from_dict(checkpoint["normalization"]),
            context_slices=int(model_config.get("context_slices", 0)),
            class_names={int(k): str(v) for k, v in (checkpoint.get("class_names") or {}).items()},
            report=None if raw_report is None else QualityFitReport.from_dict(raw_report),
            step=int(checkpoint.get("step", 0)),
        )
    except (KeyError, RuntimeError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path} does not describe a usable quality classifier: {error}"
        ) from error
    expected = model.n_colours + len(model.class_ids) + 1
    if net.in_channels != expected:
        raise CheckpointError(
            f"{path}: the classifier takes {net.in_channels} channels, its metadata implies "
            f"{expected}"
        )
    return model
