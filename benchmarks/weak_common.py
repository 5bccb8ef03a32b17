"""What ``weak_labels.py`` and ``noisy_labels.py`` share: reduced samples, training, scoring.

Reduced settings (compute is two shared CPU cores): a Medaka volume of (32, 128, 64) voxels
and ten Pap smear fields of 128 x 128 pixels; networks of 16 base channels and depth 4
(the default shape); 64-pixel patches, batches of 4; a fixed step budget for every arm (no
early stopping), one torch thread. Scores: mean foreground Dice (points) on slices that no
arm trained or validated on, against the clean full ground truth.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_distill.core.config import ModelConfig, PredictConfig, TrainConfig
from napari_distill.core.evaluation import mean_dice
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import ModelBundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_medaka, make_pap_smear

MEDAKA_SHAPE = (32, 128, 64)
PAP_FIELDS, PAP_SIDE = 10, 128
MODEL = ModelConfig()
PREDICT = PredictConfig()


@dataclass
class Volume:
    """An image, its clean labels, the slices that show structures, the class ids."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    useful: list[int]
    rgb: bool


def volume(name: str, seed: int) -> Volume:
    """The reduced Medaka or Pap smear sample of ``seed``."""
    if name == "medaka":
        sample = make_medaka(shape=MEDAKA_SHAPE, n_annotated=0, seed=seed)
        truth = sample.labels_full
        useful = [int(i) for i in np.flatnonzero(truth.reshape(len(truth), -1).any(1))]
        return Volume(name, sample.image, truth, useful, False)
    sample = make_pap_smear(PAP_FIELDS, (PAP_SIDE, PAP_SIDE), seed=seed, n_annotated=0)
    return Volume(name, sample.image, sample.semantic_full, list(range(PAP_FIELDS)), True)


def train_config(steps: int, seed: int) -> TrainConfig:
    return TrainConfig(
        steps=steps, batch_size=4, patch_size=64, validate_every=max(1, steps), seed=seed,
        keep_final=True,
    )  # fmt: skip


def score(
    bundle: ModelBundle, data: Volume, slices: list[int], classes: list[int] | None = None
) -> float:
    """Mean foreground Dice x 100 of ``bundle`` on ``slices`` against the clean truth (over
    ``classes``, default every class of the sample)."""
    torch.manual_seed(0)
    prediction = run_to_completion(
        predict_bundle(
            bundle, data.image, config=PREDICT, device="cpu", slices=slices,
            keep_probabilities=False, rgb=data.rgb,
        )
    )  # fmt: skip
    labels = np.asarray(prediction.labels)
    ids = [c for c in (np.unique(data.truth) if classes is None else classes) if c != 0]
    return 100.0 * mean_dice(labels[slices], data.truth[slices], class_ids=[0, *ids])


def summary(values: list[float]) -> dict[str, float]:
    """Mean, standard deviation (0 for one value), minimum and maximum."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "mean": round(statistics.fmean(values), 2), "sd": round(spread, 2),
        "min": round(min(values), 2), "max": round(max(values), 2), "n": len(values),
    }  # fmt: skip


def replace(config, **changes):
    return dataclasses.replace(config, **changes)


def write_json(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a run rewrites its
    results after every condition, so one cut short keeps what it measured."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_text(text)
    partial.replace(target)
