"""Score ``make demo``'s models on the slices nobody painted, and students made from its teacher.

    make demo
    .venv/bin/python benchmarks/demo_students.py demo_output
    .venv/bin/python benchmarks/demo_students.py demo_output --student [--lr 1e-3]
        [--annotated-share 0.5 | --proportional] [--mirror-pseudo] [--mirror-teacher]
        [--accept-by confidence]

The demo (``napari-distill run --sample medaka``) reports teacher and student on its
validation slices: one slice at the sample's six painted slices. This scores the demo's
``teacher_labels.tif`` and ``student_labels.tif`` (when present) against the sample's full
ground truth (mIoU over the organs, background left out, on every unannotated slice). With
``--student`` it trains a new ``kd`` student from the demo's ``teacher.pt`` on the slices its
``scores.csv`` accepts, with today's defaults but the options given, and scores the weights it
keeps, its final weights, and the weights its best validation score picked (what a student
kept before it ran to the end on one or two validation slices). ``--proportional`` draws
patches from annotated and accepted slices in proportion to their numbers, as students did
before ``KDConfig.annotated_share``. ``--accept-by confidence`` replaces the run's accepted
slices with as many others: the unannotated slices where the teacher predicts some foreground,
ranked by its confidence there (``quality_ranking.teacher_confidence``), most confident
first. One JSON object is printed.

The sample is rebuilt with ``make_medaka(n_annotated=6, seed=SAMPLE_SEED)``: 0 for ``make
demo``; for another fish, write that sample's image and labels to TIFF files and run
``napari-distill run --image ... --labels ... --seed S --out-dir DIR`` on them first.
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

from napari_distill.core.config import KDConfig, PredictConfig, TrainConfig
from napari_distill.core.evaluation import evaluate_semantic
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import ModelBundle, load_checkpoint
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import Selection
from napari_distill.core.samples import MedakaSample, make_medaka
from napari_distill.core.strategies import build_kd
from quality_ranking import teacher_confidence


def unannotated_miou(labels: np.ndarray, sample: MedakaSample) -> float:
    """mIoU over the organs on the slices that are not annotated."""
    annotated = set(sample.annotated.tolist())
    slices = [i for i in range(sample.image.shape[0]) if i not in annotated]
    scores = evaluate_semantic(
        labels, sample.labels_full, class_ids=[0, *sorted(sample.class_names)], slices=slices
    )
    return round(float(scores["mean_iou"]), 4)


def predicted_miou(bundle: ModelBundle, sample: MedakaSample, mirror: bool = False) -> float:
    config = PredictConfig(mirror=mirror)
    prediction = run_to_completion(
        predict_bundle(bundle, sample.image, config=config, device="cpu", keep_probabilities=False)
    )
    return unannotated_miou(np.asarray(prediction.labels), sample)


def most_confident_slices(teacher: ModelBundle, sample: MedakaSample, count: int) -> list[int]:
    """The ``count`` unannotated slices with predicted foreground the teacher is surest of."""
    labels, confidence = teacher_confidence(teacher, sample.image)
    annotated = set(sample.annotated.tolist())
    candidates = [
        i for i in range(len(labels)) if i not in annotated and bool((labels[i] > 0).any())
    ]
    return sorted(sorted(candidates, key=lambda i: -confidence[i])[:count])


def new_student(demo: Path, sample: MedakaSample, args: argparse.Namespace) -> dict[str, Any]:
    teacher, _ = load_checkpoint(demo / "teacher.pt", kind="teacher")
    accepted = Selection.load(demo / "scores.csv").accepted_slices
    if args.accept_by == "confidence":
        accepted = most_confident_slices(teacher, sample, len(accepted))
    share = args.annotated_share
    if args.proportional:
        n_annotated = len(teacher.extra["train_slices"])
        share = n_annotated / (n_annotated + len(set(accepted) - set(sample.annotated.tolist())))
    config = TrainConfig(learning_rate=args.lr, seed=args.seed)
    run = build_kd(teacher, sample.image, sample.labels_sparse, accepted, train_config=config,
                   strategy_config=KDConfig(annotated_share=share), device="cpu",
                   predict_config=PredictConfig(mirror=args.mirror_pseudo))  # fmt: skip
    best_score, best_step, best_state = -1.0, 0, None
    for record in run.steps():
        if record.val_score is not None and record.val_score > best_score:
            best_score, best_step = record.val_score, record.step
            best_state = copy.deepcopy(run.model.state_dict())
    kept = run.best_bundle()
    validation_choice = copy.deepcopy(run.model)
    if best_state is not None:  # else no validation slice: the final weights
        validation_choice.load_state_dict(best_state)
    final = dataclasses.replace(kept, model=copy.deepcopy(run.model).eval())
    return {
        "lr": args.lr,
        "annotated_share": round(share, 4),
        "mirror_pseudo": args.mirror_pseudo,
        "accept_by": args.accept_by,
        "accepted": len(accepted),
        "accepted_slices": sorted(accepted),
        "steps": run.step,
        "stop_reason": run.stop_reason,
        "kept_step": run.best_step,
        "kept_miou": predicted_miou(kept, sample),
        "final_miou": predicted_miou(final, sample),
        "best_validation_step": best_step,
        "best_validation_dice": round(best_score, 4),
        "best_validation_miou": predicted_miou(
            dataclasses.replace(kept, model=validation_choice.eval()), sample
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="the demo's output folder (demo_output)")
    parser.add_argument("--sample-seed", type=int, default=0, help="make_medaka's seed")
    parser.add_argument("--student", action="store_true", help="also train a new student")
    parser.add_argument("--lr", type=float, default=TrainConfig.learning_rate, help="peak rate")
    parser.add_argument("--seed", type=int, default=0, help="the student's training seed")
    shares = parser.add_mutually_exclusive_group()
    shares.add_argument("--annotated-share", type=float, default=KDConfig.annotated_share)
    shares.add_argument("--proportional", action="store_true", help="the old patch draw")
    parser.add_argument(
        "--mirror-pseudo", action="store_true", help="pseudo-labels from the mirrored teacher"
    )
    parser.add_argument(
        "--mirror-teacher", action="store_true", help="also score the teacher mirrored"
    )
    parser.add_argument(
        "--accept-by",
        choices=("run", "confidence"),
        default="run",
        help="the run's accepted slices, or as many chosen by the teacher's confidence",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sample = make_medaka(n_annotated=6, seed=args.sample_seed)
    result: dict[str, Any] = {}
    for name in ("teacher", "student"):
        path = args.demo / f"{name}_labels.tif"
        if path.is_file():
            result[name] = unannotated_miou(tifffile.imread(path), sample)
    if args.mirror_teacher:
        teacher, _ = load_checkpoint(args.demo / "teacher.pt", kind="teacher")
        result["teacher_mirrored"] = predicted_miou(teacher, sample, mirror=True)
    if args.student:
        result["new_student"] = new_student(args.demo, sample, args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
