"""How fast should a student fine-tune from its teacher? Peak learning rates compared.

    .venv/bin/python benchmarks/finetune_lr.py --sample pap --teacher-steps 400 \\
        --student-steps 200 --lrs 5e-3 1e-3 3e-4 --json OUT.json
    .venv/bin/python benchmarks/finetune_lr.py --sample medaka --teacher-steps 500 \\
        --student-steps 300 --lrs 5e-3 1e-3 3e-4 --json OUT.json

One teacher (``TrainConfig`` defaults, fixed steps, no early stopping) on the sample's sparse
annotation (Medaka: 6 annotated slices; Pap smear: 1 annotated field of 4), then a ``kd``
student from the teacher's weights on *every* unannotated slice's pseudo-label for each peak
learning rate. Reported per rate: the validation Dice every 25 steps (the curve the widgets
draw), the step whose weights were kept (0 = the teacher's), and the mIoU (points, foreground
classes) on the unannotated slices against the full ground truth; the teacher's too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill_quality import evaluate  # benchmarks/ is on sys.path when run as a script
from napari_distill.core.config import KDConfig, TrainConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import ModelBundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_medaka, make_pap_smear
from napari_distill.core.strategies import get_strategy
from napari_distill.core.training import train_teacher


def load(sample: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if sample == "pap":
        pap = make_pap_smear(seed=seed)
        return pap.image, pap.labels_sparse, pap.semantic_full
    fish = make_medaka(n_annotated=6, seed=seed)
    return fish.image, fish.labels_sparse, fish.labels_full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", choices=("medaka", "pap"), default="medaka")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--teacher-steps", type=int, default=500)
    parser.add_argument("--student-steps", type=int, default=300)
    parser.add_argument("--lrs", type=float, nargs="+", default=[5e-3, 1e-3, 3e-4])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    image, labels, truth = load(args.sample, args.seed)
    painted = labels.reshape(labels.shape[0], -1).any(axis=1)
    unannotated = np.flatnonzero(~painted).tolist()

    def miou(bundle: ModelBundle) -> float:
        return evaluate(bundle, image, truth, unannotated)

    fixed = TrainConfig(steps=args.teacher_steps, patience=10**6, seed=args.seed)
    teacher_run = train_teacher(image, labels, train_config=fixed, device="cpu")
    teacher = run_to_completion(teacher_run.steps())
    pseudo = np.asarray(run_to_completion(predict_bundle(teacher, image, device="cpu")).labels)
    out: dict[str, Any] = {
        "settings": vars(args) | {"json": str(args.json)},
        "teacher": {"miou": miou(teacher), "validation_dice": teacher.extra.get("best_score")},
        "students": [],
    }
    for lr in args.lrs:
        config = TrainConfig(
            steps=args.student_steps, patience=10**6, learning_rate=lr, seed=args.seed
        )
        run = get_strategy("kd").build(
            teacher, image, labels, unannotated, train_config=config,
            strategy_config=KDConfig(), device="cpu", pseudo_labels=pseudo,
        )  # fmt: skip
        curve = [round(r.val_score, 3) for r in run.steps() if r.val_score is not None]
        out["students"].append(
            {"lr": lr, "validation_curve": curve, "kept_step": run.best_step,
             "miou": miou(run.best_bundle())}
        )  # fmt: skip
    text = json.dumps(out, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
