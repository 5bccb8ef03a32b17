"""Pieces of :func:`~napari_distill.core.pipeline.run_pipeline` kept apart from it: the
propagation stage (the teacher against label propagation, and their combination as the
pseudo-labels), the summary's facts about the teacher, and the files a run writes
(:data:`OUTPUT_FILES`, :func:`check_out_dir`: checked before any work).

:func:`propagation_stage` compares the teacher with propagation on the painted slices its
members held out (:func:`~napari_distill.core.inference.compare_with_propagation`). When some
class is better served by propagation it propagates the whole stack and returns the
per-class combination as the pseudo-labels the quality classifier scores and the student
learns from; otherwise (the teacher wins every class, or no slice was held out) it returns
the teacher's prediction unchanged and propagates nothing more.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import PredictConfig, PropagationConfig
from .evaluation import Comparison, combine_probabilities
from .inference import NeighbourFlows, Prediction, compare_with_propagation, propagate
from .inference.predict import allocate_output
from .io import check_output_folder
from .models import ModelBundle
from .training import members_held_out_apart, stored_splits

logger = logging.getLogger(__name__)

# What a run of the pipeline writes (run_pipeline), and how report.md names each file.
OUTPUT_FILES = {
    "teacher": "teacher.pt",
    "quality": "quality.pt",
    "student": "student.pt",
    "teacher_labels": "teacher_labels.tif",
    "pseudo_labels": "pseudo_labels.tif",
    "student_labels": "student_labels.tif",
    "scores_csv": "scores.csv",
    "scores_json": "scores.json",
    "report": "report.md",
    "plot": "scores.png",
}

OUTPUT_DESCRIPTIONS = {
    "teacher": "teacher checkpoint (resumable)",
    "quality": "quality classifier checkpoint",
    "student": "student checkpoint (resumable)",
    "teacher_labels": "teacher's labels, every slice",
    "pseudo_labels": "the labels the quality classifier and the student saw",
    "student_labels": "student's labels, every slice",
    "scores_csv": "per-slice quality scores and selection",
    "scores_json": "the same, as JSON",
    "plot": "per-slice scores with tau",
}


def output_paths(
    out_dir: str | os.PathLike[str], outputs: Mapping[str, str] = OUTPUT_FILES
) -> dict[str, Path]:
    """The files a run writes into ``out_dir`` (``outputs``: key -> file name)."""
    return {key: Path(out_dir) / name for key, name in outputs.items()}


def check_out_dir(
    out_dir: str | os.PathLike[str],
    overwrite: bool,
    outputs: Mapping[str, str] = OUTPUT_FILES,
) -> dict[str, Path]:
    """Create ``out_dir`` if needed and check it can be written; refuse if it holds a run's
    files (``outputs``: this pipeline's, by default method 1's), unless ``overwrite``.

    Raises
    ------
    FileExistsError
        Some output files exist and ``overwrite`` is False (the message names them).
    NotADirectoryError, PermissionError
        ``out_dir`` (or a parent) is a file, or no file can be written into it.
    """
    directory = Path(out_dir)
    paths = output_paths(directory, outputs)
    existing = sorted(p.name for p in paths.values() if p.exists())
    if existing and not overwrite:
        raise FileExistsError(
            f"{directory} already holds {', '.join(existing)} from an earlier run: choose "
            "another folder or pass overwrite=True (--overwrite) to replace them"
        )
    check_output_folder(directory, create=True)
    return paths


def propagation_stage(
    teacher: ModelBundle,
    image: Any,
    labels: np.ndarray,
    prediction: Prediction,
    config: PropagationConfig,
    *,
    predict_config: PredictConfig,
    device: torch.device,
    work_dir: str | Path,
    rgb: bool | None = None,
    flows: NeighbourFlows | None = None,
) -> Generator[Any, None, tuple[Prediction, Comparison]]:
    """The pseudo-labels: the teacher's prediction, or its per-class combination with
    propagation where that scored better on the held-out painted slices.

    Yields the comparison's and the propagation's progress records; returns the pseudo-labels
    (a :class:`Prediction` whose probabilities are memory maps in ``work_dir`` when combined)
    and the :class:`Comparison`. ``flows``: flows between neighbouring slices of ``image``
    already estimated with ``config`` (shared with another propagation of the same stack);
    None estimates the ones needed.
    """
    if flows is None and config.method == "flow":
        flows = NeighbourFlows(image, config, rgb=rgb)
    comparison = yield from compare_with_propagation(
        teacher, image, labels, stored_splits(teacher), config, predict_config=predict_config,
        device=device, rgb=rgb, flows=flows,
    )  # fmt: skip
    logger.info("%s", comparison.summary())
    if not comparison.uses_propagation or prediction.probabilities is None:
        return prediction, comparison
    directory = Path(work_dir) / "propagation"
    propagated = yield from propagate(
        image, labels, config, rgb=rgb, flows=flows, out_dir=directory
    )
    assert propagated.probabilities is not None  # kept by default
    ids = comparison.class_ids
    where = {c: k for k, c in enumerate(propagated.class_ids)}
    combined_dir = Path(work_dir) / "combined"
    combined_dir.mkdir(parents=True, exist_ok=True)
    shape = prediction.probabilities.shape
    aligned = allocate_output(shape, np.float32, combined_dir, "propagation.npy")
    for k, class_id in enumerate(ids):
        aligned[k] = propagated.probabilities[where[class_id]] if class_id in where else 0.0
    probabilities = allocate_output(shape, np.float32, combined_dir, "probabilities.npy")
    combine_probabilities(comparison, prediction.probabilities, aligned, labels, out=probabilities)
    lut = np.asarray(ids, dtype=prediction.labels.dtype)
    combined_labels = allocate_output(
        prediction.labels.shape, lut.dtype, combined_dir, "labels.npy"
    )
    for index in range(shape[1]):
        combined_labels[index] = lut[probabilities[:, index].argmax(axis=0)]
    return Prediction(probabilities, combined_labels, ids, prediction.slices), comparison


def validated(bundle: ModelBundle) -> float | None:
    """The validation score of the bundle's kept weights (None when never validated)."""
    score = bundle.extra.get("best_score")
    return None if score is None else float(score)


def members_held_out(teacher: ModelBundle) -> tuple[tuple[int, ...], ...]:
    """The slices each ensemble member held out, when they differ (else none)."""
    if not members_held_out_apart(teacher):
        return ()
    return tuple(tuple(validation) for _, validation in stored_splits(teacher))


def held_out(teacher: ModelBundle) -> tuple[int, ...]:
    """Validation slices the teacher did not train on (none when it validated on its own)."""
    training = {int(i) for i in teacher.extra.get("train_slices", ())}
    validation = tuple(int(i) for i in teacher.extra.get("validation_slices", ()))
    return () if set(validation) <= training else validation
