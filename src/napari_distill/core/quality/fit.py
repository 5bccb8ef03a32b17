"""The quality classifier of method 1: predicts, per slice, the IoU of the teacher's pseudo-label.

:class:`QualityNet` (in :mod:`.quality_model`) is a small CNN. Its input is the slice's colour
channels (the centre slice of a 2.5D teacher) stacked with the teacher's soft probabilities and a
validity mask, padded to a square and resized to ``QualityConfig.input_size``
(:func:`quality_input`); its output is a sigmoid score in [0, 1], the predicted
:func:`slice_iou` (optionally also one per class).

:func:`fit_quality` trains it on the annotated slices, where the true IoU is known, from
predictions of every quality (:mod:`.quality_variants`). A share of the annotated slices is
held out: the Spearman rank correlation between predicted and true IoU on their predictions is
reported in :class:`QualityFitReport`. :func:`score_slices` (in :mod:`.quality_scoring`,
re-exported here) rates every slice of a stack, and beside the classifier's score measures the
teacher's own :func:`pseudo_label_confidence`. Checkpoints are written by
:mod:`.quality_model` with kind ``"quality"``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import PredictConfig, QualityConfig, TrainConfig
from ..device import select_device
from ..evaluation import spearman
from ..models import ModelBundle
from ..preprocess import labels_to_indices, slice_input
from ..training import TrainingRun, TrainStep, prepare_pair
from .model import (
    QualityFitReport,
    QualityModel,
    QualityNet,
    quality_bundle,
)
from .variants import (
    VariantProgress,
    VariantSet,
    make_variants,
)

logger = logging.getLogger(__name__)

__all__ = [
    "fit_quality",
    "holdout_split",
]

# True IoUs closer than this are not ranked against each other (ties, label noise).
RANK_MARGIN = 0.02


# ------------------------------------------------------------------------------ fitting
class _QualityObjective:
    """BCE between the sigmoid head and the true IoU plus a pairwise ranking term, on batches
    balanced over IoU levels.

    The ranking term (RankNet's logistic loss on score differences, over the pairs of a batch
    whose true IoUs differ by more than :data:`RANK_MARGIN`) rewards the order directly: what
    the selection at ``tau`` and the reported Spearman depend on, even when the IoUs of the
    annotated slices span a narrow range.

    Rows are drawn with weights inverse to how many rows share their IoU decile, so rare
    qualities (usually the middling ones) are seen as often as common ones. Each row gets a
    random flip / 90-degree turn: a slice's IoU does not depend on its orientation.
    """

    phase = "quality"

    def __init__(self, variants: VariantSet, batch_size: int, per_class: bool):
        self.inputs = torch.from_numpy(variants.inputs)
        self.targets = torch.from_numpy(variants.targets)
        self.class_targets = torch.from_numpy(variants.class_targets)
        self.batch_size = batch_size
        self.per_class = per_class
        bins = np.minimum((variants.targets * 10).astype(int), 9)
        counts = np.bincount(bins, minlength=10)
        weights = 1.0 / counts[bins]
        self.weights = weights / weights.sum()

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        rows = rng.choice(len(self.weights), size=self.batch_size, p=self.weights)
        x = self.inputs[rows].float()
        for i in range(len(rows)):
            turns = int(rng.integers(4))
            sample = torch.rot90(x[i], turns, dims=(1, 2))
            x[i] = torch.flip(sample, dims=(2,)) if rng.random() < 0.5 else sample
        return {"x": x, "y": self.targets[rows], "y_class": self.class_targets[rows]}

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["x"]).float()
        slice_loss = F.binary_cross_entropy_with_logits(logits[:, 0], batch["y"])
        scores, targets = logits[:, 0], batch["y"]
        better = (targets[:, None] - targets[None, :]) > RANK_MARGIN
        logs = {"bce": float(slice_loss.detach())}
        loss = slice_loss
        if better.any():
            rank_loss = F.softplus(-(scores[:, None] - scores[None, :])[better]).mean()
            loss = loss + rank_loss
            logs["rank"] = float(rank_loss.detach())
        if self.per_class:
            known = ~torch.isnan(batch["y_class"])
            if known.any():
                target = torch.nan_to_num(batch["y_class"])
                class_loss = F.binary_cross_entropy_with_logits(logits[:, 1:][known], target[known])
                loss = loss + class_loss
                logs["bce_class"] = float(class_loss.detach())
        return loss, logs


def holdout_split(
    annotated: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Training and held-out annotated slices: ``fraction`` held out, at least one when there
    are 3 or more, none with fewer (the fit report's Spearman is then NaN)."""
    annotated = sorted(int(i) for i in annotated)
    n_holdout = 0
    if len(annotated) >= 3 and fraction > 0:
        n_holdout = min(len(annotated) - 1, max(1, round(fraction * len(annotated))))
    order = np.random.default_rng(seed).permutation(len(annotated))
    holdout = sorted(annotated[i] for i in order[:n_holdout])
    return [i for i in annotated if i not in holdout], holdout


def _report(
    model: QualityModel, variants: VariantSet, train: list[int], holdout: list[int], device
) -> QualityFitReport:
    held = variants.subset(holdout)
    truth = held.targets.astype(np.float64)
    predicted = model.predict(held.inputs, device)[0].astype(np.float64) if len(truth) else truth
    rho = spearman(predicted, truth) if len(truth) >= 3 else float("nan")
    if math.isnan(rho):
        advice = (
            "annotate at least 3 slices so that one can be held out"
            if not holdout
            else "the held-out pseudo-labels are too few or of one quality; annotate more slices"
        )
        logger.warning(
            "quality classifier: no rank correlation to report (%d held-out predictions from "
            "%d held-out slice(s)): %s",
            len(truth),
            len(holdout),
            advice,
        )
    mae = float(np.mean(np.abs(predicted - truth))) if len(truth) else float("nan")
    return QualityFitReport(
        spearman=float(rho),
        mean_abs_error=mae,
        train_slices=tuple(train),
        holdout_slices=tuple(holdout),
        n_train=int(len(variants.targets) - len(truth)),
        n_holdout=int(len(truth)),
        target_range=(float(variants.targets.min()), float(variants.targets.max())),
        holdout_true=tuple(float(v) for v in truth),
        holdout_predicted=tuple(float(v) for v in predicted),
    )


def fit_quality(
    teacher: ModelBundle,
    image: np.ndarray,
    labels: np.ndarray,
    *,
    config: QualityConfig = QualityConfig(),  # noqa: B008 - frozen, never mutated
    teacher_snapshots: Sequence[Mapping[str, torch.Tensor]] = (),
    device: str | torch.device = "auto",
    predict_config: PredictConfig = PredictConfig(),  # noqa: B008 - frozen
    rgb: bool | None = None,
) -> Generator[VariantProgress | TrainStep, None, QualityModel]:
    """Fit a quality classifier for ``teacher`` on the annotated slices of ``labels``.

    Yields a :class:`VariantProgress` per variant prediction, then a
    :class:`~napari_distill.core.training.TrainStep` (phase ``"quality"``) per optimiser step;
    returns the :class:`QualityModel` with its :class:`QualityFitReport` (also logged).

    Parameters
    ----------
    teacher:
        The teacher whose pseudo-labels are to be rated.
    image, labels:
        The stack and its labels (slices with any non-zero label are annotated).
    config:
        Steps, learning rate, input size, variants per slice, held-out fraction, seed.
    teacher_snapshots:
        State dicts of the teacher from earlier in its training (:class:`SnapshotRecorder`).
    device:
        Where to compute.
    predict_config:
        How the teacher predicts a slice.
    rgb:
        Whether the last axis of ``image`` is colour (None guesses).

    Raises
    ------
    ValueError
        Shape mismatch, no annotated slice, or labels with classes the teacher does not know.
    """
    stack, labels_stack, annotated = prepare_pair(image, labels, rgb)
    if len(teacher.normalization.low) != stack.shape[-1]:
        raise ValueError(
            f"the teacher was trained on {len(teacher.normalization.low)} colour channel(s), "
            f"the image of shape {np.shape(image)} has {stack.shape[-1]}"
        )
    torch_device = select_device(device)
    context = teacher.model_config.context_slices
    inputs = {int(i): slice_input(stack, int(i), teacher.normalization, context) for i in annotated}
    try:
        truths = {
            i: labels_to_indices(np.asarray(labels_stack[i]), teacher.class_ids) for i in inputs
        }
    except ValueError as error:
        raise ValueError(f"the labels do not fit the teacher: {error}") from error
    variants = yield from make_variants(
        teacher.model,
        inputs,
        truths,
        num_classes=len(teacher.class_ids),
        n_colours=stack.shape[-1],
        context_slices=context,
        config=config,
        snapshots=teacher_snapshots,
        device=torch_device,
        predict_config=predict_config,
    )
    train, holdout = holdout_split(annotated, config.holdout_fraction, config.seed)
    torch.manual_seed(config.seed)
    class_outputs = len(teacher.class_ids) - 1 if config.per_class_head else 0
    net = QualityNet(variants.inputs.shape[1], config.base_channels, class_outputs)
    model = QualityModel(
        net, config, tuple(teacher.class_ids), stack.shape[-1], teacher.normalization, context,
        dict(teacher.class_names),
    )  # fmt: skip
    train_config = TrainConfig(
        steps=config.steps,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        validation_fraction=0.0,
        augment=True,
        seed=config.seed,
    )
    run = TrainingRun(
        quality_bundle(model),
        _QualityObjective(variants.subset(train), config.batch_size, config.per_class_head),
        train_config,
        device=torch_device,
        total_steps=config.steps,
    )
    fitted = yield from run.steps()
    model.net = fitted.model.cpu().eval()  # type: ignore[assignment]
    model.step = fitted.step
    model.report = _report(model, variants, train, holdout, torch_device)
    logger.info(
        "quality classifier: Spearman %.3f, mean |error| %.3f on %d held-out predictions "
        "(slices %s); true IoU of the variants from %.2f to %.2f",
        model.report.spearman,
        model.report.mean_abs_error,
        model.report.n_holdout,
        list(holdout),
        *model.report.target_range,
    )
    return model
