"""Training material for the quality classifier: pseudo-labels of every quality, with true IoU.

On an annotated slice the true IoU of a teacher's pseudo-label is known. One teacher
prediction per slice would only show the classifier good pseudo-labels (the teacher was trained
on those slices), so each slice is predicted by several *sources* of varied quality:

- the teacher itself and its snapshots from earlier in training
  (:class:`~.snapshots.SnapshotRecorder`);
- test-time dropout at increasing rates (dropout layers on in eval mode);
- perturbed inputs: noise, blur, intensity scale/shift, partial occlusion;
- weakened weights: Gaussian noise on every weight tensor, relative to that tensor's spread,
  on a geometric scale from 2 % to 100 %, so that the targets reach down to 0.

Every source is seeded. The classifier sees, for each prediction, the slice it was made from
and the soft probabilities (see :func:`quality_input`); its target is :func:`slice_iou`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from ..config import PredictConfig, QualityConfig
from ..evaluation import iou_per_class
from ..inference import predict_slice_probabilities
from ..models import enable_dropout

logger = logging.getLogger(__name__)

# Kinds of randomised sources, cycled over ``QualityConfig.variants_per_slice``.
RANDOM_KINDS = ("dropout", "input", "weights")
# Weight noise, relative to each tensor's standard deviation: geometric from mild to ruinous.
WEIGHT_NOISE_RANGE = (0.02, 1.0)
# Test-time dropout rates from mild to strong (applied to the model's own dropout layers).
DROPOUT_RANGE = (0.05, 0.5)


# ------------------------------------------------------------------------------ the target
def slice_class_ious(pred: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """IoU of each foreground channel ``1..K-1`` on one slice of channel indices.

    NaN where the class is in neither the prediction nor the truth.
    """
    per_class = iou_per_class(pred, truth, class_ids=range(num_classes))
    return np.asarray([per_class[k] for k in range(1, num_classes)], dtype=np.float32)


def slice_iou(pred: np.ndarray, truth: np.ndarray, class_ids: Sequence[int] | None = None) -> float:
    """The quality of a pseudo-label on one slice: the classifier's target.

    Defined as the mean IoU over the foreground classes present in the truth or in the
    prediction on that slice (background is left out: it dominates CT slices). When neither
    holds any foreground the pseudo-label is right to be empty, and the IoU is 1.

    Parameters
    ----------
    pred, truth:
        ``(H, W)`` label values (class ids) of the pseudo-label and the ground truth.
    class_ids:
        All class ids (background 0 first); None takes those found in either array.
    """
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"pseudo-label {pred.shape} and truth {truth.shape} differ in shape")
    ids = sorted({0, *np.unique(pred).tolist(), *np.unique(truth).tolist()})
    if class_ids is not None:
        ids = sorted({0, *(int(c) for c in class_ids)})
    scores = iou_per_class(pred, truth, class_ids=ids)
    foreground = [v for c, v in scores.items() if c != 0 and not math.isnan(v)]
    return float(np.mean(foreground)) if foreground else 1.0


# ------------------------------------------------------------------------------ the input
def quality_input(image: np.ndarray, probabilities: np.ndarray, size: int) -> np.ndarray:
    """What the classifier sees: ``(C + K + 1, size, size)`` float32.

    The slice's colour channels ``image (C, H, W)`` (normalised, centre slice only) and the
    teacher's probabilities ``(K, H, W)`` are padded to a square (centred, zeros) and resized
    to ``size`` (antialiased when shrinking); the last channel is 1 inside the slice and 0 in
    the padding, so padding is never mistaken for dark tissue or background.
    """
    if image.shape[1:] != probabilities.shape[1:]:
        raise ValueError(
            f"image {image.shape} and probabilities {probabilities.shape} differ in (H, W)"
        )
    colours, height, width = image.shape
    classes = probabilities.shape[0]
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    canvas = np.zeros((colours + classes + 1, side, side), np.float32)
    inside = (slice(top, top + height), slice(left, left + width))
    canvas[(slice(0, colours), *inside)] = image
    canvas[(slice(colours, colours + classes), *inside)] = probabilities
    canvas[(-1, *inside)] = 1.0
    if side == size:
        return canvas
    tensor = torch.from_numpy(canvas)[None]
    resized = F.interpolate(
        tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=side > size
    )
    return resized[0].numpy()


# ------------------------------------------------------------------------------ sources
@dataclass(frozen=True)
class VariantSource:
    """One way of making a prediction: ``kind`` at ``strength`` in [0, 1]."""

    kind: str  # "teacher", "snapshot", "dropout", "input" or "weights"
    strength: float = 0.0
    index: int = 0  # snapshot number, or the variant's number (its seed offset)


@dataclass(frozen=True)
class VariantProgress:
    """Variant predictions made so far: ``done`` of ``total`` (for the progress bar)."""

    done: int
    total: int
    elapsed_s: float
    eta_s: float | None
    phase: str = "variants"


@dataclass
class VariantSet:
    """Classifier inputs and their targets, one row per (source, slice) prediction.

    Attributes
    ----------
    inputs:
        ``(M, C + K + 1, S, S)`` float16 (see :func:`quality_input`).
    targets:
        ``(M,)`` true :func:`slice_iou` of each prediction.
    class_targets:
        ``(M, K - 1)`` IoU per foreground class (NaN where a class is in neither).
    slices:
        ``(M,)`` the slice each row comes from.
    kinds:
        The source kind of each row.
    """

    inputs: np.ndarray
    targets: np.ndarray
    class_targets: np.ndarray
    slices: np.ndarray
    kinds: tuple[str, ...]

    def subset(self, slices: Sequence[int]) -> VariantSet:
        """The rows of the given slices."""
        rows = np.flatnonzero(np.isin(self.slices, np.asarray(list(slices), dtype=np.int64)))
        return VariantSet(
            self.inputs[rows],
            self.targets[rows],
            self.class_targets[rows],
            self.slices[rows],
            tuple(self.kinds[i] for i in rows),
        )


def plan_sources(n_snapshots: int, n_random: int, seed: int) -> list[VariantSource]:
    """The teacher, every snapshot, then ``n_random`` randomised sources.

    Randomised kinds are cycled; the strengths of each kind are stratified over (0, 1] (one
    draw per equal-width stratum) so that mild and strong versions are both made.
    """
    rng = np.random.default_rng(seed)
    sources = [VariantSource("teacher")]
    sources += [VariantSource("snapshot", index=i) for i in range(n_snapshots)]
    kinds = [RANDOM_KINDS[j % len(RANDOM_KINDS)] for j in range(n_random)]
    for kind in RANDOM_KINDS:
        members = [j for j, k in enumerate(kinds) if k == kind]
        strata = rng.permutation(len(members))
        for j, stratum in zip(members, strata, strict=True):
            strength = (stratum + rng.uniform(0.05, 1.0)) / len(members)
            sources.append(VariantSource(kind, float(strength), j))
    return sources


class _DropoutAlwaysOn(nn.Module):
    """A model whose dropout stays on in eval mode (so any predictor samples it)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.config = getattr(model, "config", None)

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.model, "size_multiple", 1) or 1)

    def train(self, mode: bool = True) -> _DropoutAlwaysOn:
        super().train(mode)
        enable_dropout(self.model)
        return self

    def forward(self, x: torch.Tensor) -> Any:
        return self.model(x)


def _dropout_model(teacher: nn.Module, rate: float) -> nn.Module | None:
    """A copy of ``teacher`` with every dropout layer at ``rate`` (at least its own) and on."""
    model = copy.deepcopy(teacher)
    layers = [m for m in model.modules() if isinstance(m, nn.Dropout | nn.Dropout2d)]
    if not layers:
        return None
    for layer in layers:
        layer.p = max(float(layer.p), rate)
    return _DropoutAlwaysOn(model)


def _noisy_model(teacher: nn.Module, relative_sigma: float, seed: int) -> nn.Module:
    """A copy of ``teacher`` with Gaussian noise of ``relative_sigma`` x each tensor's spread."""
    model = copy.deepcopy(teacher)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            values = parameter.detach().float().cpu()
            spread = values.std() if values.numel() > 1 else values.abs().mean()
            if not torch.isfinite(spread) or spread == 0:
                spread = values.abs().mean()
            noise = torch.randn(values.shape, generator=generator) * relative_sigma * spread
            parameter.add_(noise.to(parameter.device, parameter.dtype))
    return model


def perturb_input(x: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """A degraded copy of a normalised network input ``(C_in, H, W)``.

    Each of noise, blur, intensity scale/shift and occlusion is applied with probability 1/2
    (at least one), with an amount growing with ``strength`` in [0, 1]. Amounts are in
    normalised intensity units (the robust window spans 1) and fractions of the slice.
    """
    out = np.array(x, dtype=np.float32, copy=True)
    height, width = out.shape[1:]
    chosen = [op for op in ("blur", "intensity", "noise", "occlusion") if rng.random() < 0.5]
    if not chosen:
        chosen = [str(rng.choice(["blur", "intensity", "noise", "occlusion"]))]
    if "blur" in chosen:
        sigma = strength * 0.03 * min(height, width) + 0.5
        out = ndimage.gaussian_filter(out, sigma=(0, sigma, sigma), mode="nearest")
    if "intensity" in chosen:
        scale = 1.0 + rng.uniform(-0.6, 0.6) * strength
        out = out * np.float32(scale) + np.float32(rng.uniform(-0.5, 0.5) * strength)
    if "noise" in chosen:
        out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(0.4 * strength)
    if "occlusion" in chosen:
        side = math.sqrt(0.5 * strength)
        rows, cols = max(1, round(side * height)), max(1, round(side * width))
        top = int(rng.integers(0, height - rows + 1))
        left = int(rng.integers(0, width - cols + 1))
        fill = np.median(out, axis=(1, 2))[:, None, None]
        out[:, top : top + rows, left : left + cols] = fill
    return out


def _source_model(
    source: VariantSource,
    teacher: nn.Module,
    snapshots: Sequence[Mapping[str, torch.Tensor]],
    seed: int,
) -> nn.Module:
    if source.kind == "snapshot":
        model = copy.deepcopy(teacher)
        model.load_state_dict(snapshots[source.index])
        return model
    if source.kind == "weights":
        low, high = WEIGHT_NOISE_RANGE
        sigma = low * (high / low) ** source.strength
        return _noisy_model(teacher, sigma, seed + 7919 * (source.index + 1))
    if source.kind == "dropout":
        low, high = DROPOUT_RANGE
        model = _dropout_model(teacher, low + (high - low) * source.strength)
        if model is not None:
            return model
        logger.info("the teacher has no dropout layer: weight noise instead of dropout")
        return _noisy_model(teacher, 0.1 + 0.4 * source.strength, seed + 104729 + source.index)
    return teacher


def make_variants(
    teacher: nn.Module,
    inputs: Mapping[int, np.ndarray],
    truths: Mapping[int, np.ndarray],
    *,
    num_classes: int,
    n_colours: int,
    context_slices: int,
    config: QualityConfig,
    snapshots: Sequence[Mapping[str, torch.Tensor]] = (),
    device: torch.device | str = "cpu",
    predict_config: PredictConfig = PredictConfig(),  # noqa: B008 - frozen
) -> Generator[VariantProgress, None, VariantSet]:
    """Predict every slice with every source; yield progress; return the :class:`VariantSet`.

    Parameters
    ----------
    teacher:
        The teacher network (its weights are never changed; sources work on copies).
    inputs:
        ``{slice: (C_in, H, W)}`` normalised network inputs (with 2.5D context).
    truths:
        ``{slice: (H, W)}`` ground truth as channel indices.
    num_classes, n_colours, context_slices:
        The teacher's outputs, the image's colours and the teacher's 2.5D context.
    config:
        ``variants_per_slice`` randomised sources, ``input_size`` and ``seed``.
    snapshots:
        Earlier state dicts of the teacher (e.g. from :class:`SnapshotRecorder`).
    """
    device = torch.device(device)
    teacher = teacher.to(device)
    sources = plan_sources(len(snapshots), config.variants_per_slice, config.seed)
    order = sorted(inputs)
    total, done = len(sources) * len(order), 0
    centre = slice(context_slices * n_colours, (context_slices + 1) * n_colours)
    rows: list[np.ndarray] = []
    targets: list[float] = []
    class_targets: list[np.ndarray] = []
    row_slices: list[int] = []
    kinds: list[str] = []
    start = time.perf_counter()
    for number, source in enumerate(sources):
        model = _source_model(source, teacher, snapshots, config.seed).to(device)
        rng = np.random.default_rng([config.seed, number])
        for index in order:
            x = inputs[index]
            if source.kind == "input":
                x = perturb_input(x, source.strength, rng)
            with torch.random.fork_rng(devices=[]):  # seeded dropout, caller's RNG untouched
                torch.manual_seed(config.seed * 1_000_003 + number * 1009 + index)
                probs = predict_slice_probabilities(model, x, predict_config, device)
            pseudo = probs.argmax(axis=0)
            truth = truths[index]
            class_iou = slice_class_ious(pseudo, truth, num_classes)
            present = class_iou[~np.isnan(class_iou)]
            targets.append(float(present.mean()) if present.size else 1.0)
            class_targets.append(class_iou)
            rows.append(quality_input(x[centre], probs, config.input_size).astype(np.float16))
            row_slices.append(index)
            kinds.append(source.kind)
            done += 1
            elapsed = time.perf_counter() - start
            yield VariantProgress(done, total, elapsed, elapsed / done * (total - done))
    result = VariantSet(
        inputs=np.stack(rows),
        targets=np.asarray(targets, np.float32),
        class_targets=np.stack(class_targets).reshape(len(rows), num_classes - 1),
        slices=np.asarray(row_slices, np.int64),
        kinds=tuple(kinds),
    )
    logger.info(
        "quality variants: %d predictions, true IoU from %.3f to %.3f (median %.3f)",
        len(rows),
        float(result.targets.min()),
        float(result.targets.max()),
        float(np.median(result.targets)),
    )
    return result
