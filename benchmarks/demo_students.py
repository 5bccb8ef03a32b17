"""Score ``make demo``'s models on the slices nobody painted, and students made from its teacher.

    make demo
    .venv/bin/python benchmarks/demo_students.py demo_output
    .venv/bin/python benchmarks/demo_students.py demo_output --lr 1e-3 --run-to-end

The demo (``napari-distill run --sample medaka``) reports teacher and student on its
validation slices: one slice at the sample's six painted slices. This scores the demo's
``teacher_labels.tif`` and ``student_labels.tif`` against the sample's full ground truth (mIoU
over the organs, background left out, on every unannotated slice), then, with ``--lr``, trains
a new ``kd`` student from the demo's ``teacher.pt`` on the slices its ``scores.csv`` accepts
(``TrainConfig`` defaults but the peak learning rate; ``--run-to-end`` turns early stopping
off) and scores its kept weights and its final ones. One JSON object is printed. The sample is
rebuilt with ``make_medaka(n_annotated=6, seed=0)``, as the demo makes it.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from napari_distill.core.checkpoint import ModelBundle, load_checkpoint
from napari_distill.core.config import TrainConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.metrics import evaluate_semantic
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import MedakaSample, make_medaka
from napari_distill.core.selection import Selection
from napari_distill.core.strategies.kd import build_kd


def unannotated_miou(labels: np.ndarray, sample: MedakaSample) -> float:
    """mIoU over the organs on the slices that are not annotated."""
    annotated = set(sample.annotated.tolist())
    slices = [i for i in range(sample.image.shape[0]) if i not in annotated]
    scores = evaluate_semantic(
        labels, sample.labels_full, class_ids=[0, *sorted(sample.class_names)], slices=slices
    )
    return round(float(scores["mean_iou"]), 4)


def predicted_miou(bundle: ModelBundle, sample: MedakaSample) -> float:
    prediction = run_to_completion(
        predict_bundle(bundle, sample.image, device="cpu", keep_probabilities=False)
    )
    return unannotated_miou(np.asarray(prediction.labels), sample)


def new_student(demo: Path, sample: MedakaSample, lr: float, run_to_end: bool) -> dict[str, Any]:
    teacher, _ = load_checkpoint(demo / "teacher.pt", kind="teacher")
    accepted = Selection.load(demo / "scores.csv").accepted_slices
    config = TrainConfig(learning_rate=lr, patience=10**9 if run_to_end else TrainConfig.patience)
    run = build_kd(teacher, sample.image, sample.labels_sparse, accepted, train_config=config,
                   device="cpu")  # fmt: skip
    kept = run_to_completion(run.steps())
    final = dataclasses.replace(kept, model=copy.deepcopy(run.model).eval())
    return {
        "lr": lr,
        "run_to_end": run_to_end,
        "accepted": len(accepted),
        "steps": run.step,
        "kept_step": run.best_step,
        "kept_validation_dice": run.best_score,
        "kept_miou": predicted_miou(kept, sample),
        "final_miou": predicted_miou(final, sample),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="the demo's output folder (demo_output)")
    parser.add_argument("--lr", type=float, help="also train a student at this peak rate")
    parser.add_argument("--run-to-end", action="store_true", help="no early stopping")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sample = make_medaka(n_annotated=6, seed=0)
    result: dict[str, Any] = {
        name: unannotated_miou(tifffile.imread(args.demo / f"{name}_labels.tif"), sample)
        for name in ("teacher", "student")
    }
    if args.lr is not None:
        result["new_student"] = new_student(args.demo, sample, args.lr, args.run_to_end)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
