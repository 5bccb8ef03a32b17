"""How well the quality scores rank the teacher's pseudo-labels on the slices nobody painted.

    make demo
    .venv/bin/python benchmarks/quality_ranking.py demo_output [--sample-seed 0]

The quality classifier's own report (``report.md``, the Quality review's Fit tab) is its
Spearman on the held-out annotated slices' *variants*: pseudo-labels made worse on purpose
(earlier checkpoints, dropout, perturbed inputs), whose qualities spread widely. What the
review needs is a ranking of the teacher's *real* pseudo-labels. On the Medaka sample the
full ground truth is known, so this scores each unannotated slice's pseudo-label
(``slice_iou`` of the run's teacher prediction, the classifier's own target) and reports the
Spearman correlation with it of

- the run's quality scores (``scores.csv``), and
- the teacher's own confidence, which needs no training
  (``core.quality.pseudo_label_confidence``, also in ``scores.csv`` since 2026-12-02): its mean
  top-class probability over the pixels it calls foreground (over the whole slice on a slice
  it calls all background),

on every unannotated slice and on those that show an organ, with the mean true IoU of the
slices each would accept (the run's accepted slices; as many of the most confident ones).
One JSON object is printed. The sample is rebuilt with
``make_medaka(n_annotated=6, seed=SAMPLE_SEED)`` (see ``demo_students.py`` for another fish).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_distill.core.evaluation import spearman
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import ModelBundle, load_checkpoint
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import Selection, pseudo_label_confidence, slice_iou
from napari_distill.core.samples import make_medaka


def teacher_confidence(teacher: ModelBundle, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's labels ``(N, H, W)`` and its ``pseudo_label_confidence`` per slice."""
    prediction = run_to_completion(
        predict_bundle(teacher, image, device="cpu", keep_probabilities=True)
    )
    probabilities = np.asarray(prediction.probabilities)  # (K, N, H, W)
    background = teacher.class_ids.index(0)
    confidence = [
        pseudo_label_confidence(probabilities[:, i], background)
        for i in range(len(probabilities[0]))
    ]
    return np.asarray(prediction.labels), np.asarray(confidence)


def ranking(scores: np.ndarray, truth: np.ndarray, organs: np.ndarray) -> dict[str, float]:
    return {
        "spearman_all": round(spearman(scores, truth), 3),
        "spearman_organ_slices": round(spearman(scores[organs], truth[organs]), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a run's output folder (demo_output)")
    parser.add_argument("--sample-seed", type=int, default=0, help="make_medaka's seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sample = make_medaka(n_annotated=6, seed=args.sample_seed)
    teacher, _ = load_checkpoint(args.run / "teacher.pt", kind="teacher")
    selection = Selection.load(args.run / "scores.csv")
    labels, confidence_per_slice = teacher_confidence(teacher, sample.image)
    class_ids = [0, *sorted(sample.class_names)]
    annotated = set(sample.annotated.tolist())
    slices = [i for i in sorted(selection.scores) if i not in annotated]
    truth = np.array([slice_iou(labels[i], sample.labels_full[i], class_ids) for i in slices])
    organs = np.array([bool(sample.labels_full[i].any()) for i in slices])
    quality = np.array([selection.scores[i] for i in slices])
    confidence = confidence_per_slice[slices]
    accepted = np.array([i in selection.accepted for i in slices])
    most_confident = np.argsort(-confidence, kind="stable")[: int(accepted.sum())]
    result: dict[str, Any] = {
        "unannotated_slices": len(slices),
        "organ_slices": int(organs.sum()),
        "quality_scores": ranking(quality, truth, organs),
        "teacher_confidence": ranking(confidence, truth, organs),
        "accepted": int(accepted.sum()),
        "true_iou_accepted": round(float(truth[accepted].mean()), 3) if accepted.any() else None,
        "true_iou_rejected": round(float(truth[~accepted].mean()), 3),
        "true_iou_most_confident": round(float(truth[most_confident].mean()), 3)
        if accepted.any()
        else None,
        "organ_slices_most_confident": int(organs[most_confident].sum()),
        "organ_slices_accepted": int(organs[accepted].sum()),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
