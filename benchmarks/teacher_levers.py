"""One teacher run on the Medaka sample, scored on the unseen slices as it trains.

    .venv/bin/python benchmarks/teacher_levers.py --seed 0 --steps 2000
    .venv/bin/python benchmarks/teacher_levers.py --seed 0 --steps 2000 \\
        --train '{"patch_size": 128}' --model '{"context_slices": 1}'

What ``teacher_quality.py`` cannot show: how the score on the *unannotated* slices (mIoU over
the nine organs, background left out, against the full ground truth) moves during a run,
next to the validation score the run sees. A teacher is trained on ``make_medaka(n_annotated=k,
seed=seed)`` with ``TrainConfig``/``ModelConfig`` defaults plus the JSON overrides given,
early stopping off (``patience`` huge) so that every run goes to ``--steps``. The unseen
slices are scored every ``--every`` steps and whenever the validation score reaches a new best
(so the weights a best-validation rule would keep are scored too); at the end the final
weights are scored alone, per organ, and with mirror test-time augmentation (the mean of the
softmax over the four flips of each slice). One JSON object is printed.

Used to choose the teacher's defaults (docs/benchmarks.md, "Teacher quality"): keep the final
weights or the best-validating ones, the budget, and levers that did not pay (2.5D context,
larger patches, no intensity jitter, elastic deformation).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.evaluation import evaluate_semantic
from napari_distill.core.inference import predict_stack
from napari_distill.core.models import ModelBundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import MedakaSample, make_medaka
from napari_distill.core.training import train_teacher

MIRRORS = ((), (1,), (2,), (1, 2))  # axes of the (N, H, W) stack flipped


def unseen_scores(
    model: torch.nn.Module,
    bundle: ModelBundle,
    sample: MedakaSample,
    slices: list[int],
    mirror: bool = False,
) -> tuple[float, dict[str, float]]:
    """mIoU over the organs and IoU per organ of ``model`` on ``slices``."""
    total = None
    for axes in MIRRORS if mirror else ((),):
        image = np.ascontiguousarray(np.flip(sample.image, axes)) if axes else sample.image
        prediction = run_to_completion(
            predict_stack(
                model,
                image,
                normalization=bundle.normalization,
                class_ids=bundle.class_ids,
                context_slices=bundle.model_config.context_slices,
                device="cpu",
                slices=slices,
            )
        )
        probabilities = prediction.probabilities
        if axes:
            probabilities = np.flip(probabilities, tuple(a + 1 for a in axes))
        total = probabilities if total is None else total + probabilities
    labels = np.asarray(bundle.class_ids)[total.argmax(0)]
    organs = sorted(sample.class_names)
    scores = evaluate_semantic(labels, sample.labels_full, class_ids=[0, *organs], slices=slices)
    per_organ = {sample.class_names[c]: round(scores["iou"][c], 3) for c in organs}
    return round(scores["mean_iou"], 4), per_organ


def run(args: argparse.Namespace) -> dict[str, Any]:
    sample = make_medaka(n_annotated=args.k, seed=args.seed)
    annotated = set(sample.annotated.tolist())
    unseen = [i for i in range(sample.image.shape[0]) if i not in annotated]
    train_overrides = json.loads(args.train)
    model_overrides = json.loads(args.model)
    training = train_teacher(
        sample.image,
        sample.labels_sparse,
        model_config=ModelConfig(**model_overrides),
        train_config=TrainConfig(
            seed=args.seed, steps=args.steps, patience=10**9, **train_overrides
        ),
        device="cpu",
    )
    started = time.perf_counter()
    curve: dict[int, dict[str, float | None]] = {}
    best = -1.0
    for record in training.steps():
        new_best = record.val_score is not None and record.val_score > best
        best = max(best, record.val_score or -1.0)
        if new_best or record.step % args.every == 0:
            miou, _ = unseen_scores(training.model, training.meta, sample, unseen)
            curve[record.step] = {"validation": record.val_score, "unseen_miou": miou}
    final = unseen_scores(training.model, training.meta, sample, unseen)
    mirrored = unseen_scores(training.model, training.meta, sample, unseen, mirror=True)
    best_step = max(
        (step for step, point in curve.items() if point["validation"] is not None),
        key=lambda step: (curve[step]["validation"], -step),
    )
    return {
        "command": "benchmarks/teacher_levers.py " + " ".join(args.argv),
        "k": args.k,
        "seed": args.seed,
        "steps": args.steps,
        "train_overrides": train_overrides,
        "model_overrides": model_overrides,
        "final_miou": final[0],
        "final_iou": final[1],
        "final_mirrored_miou": mirrored[0],
        "best_validation_step": best_step,
        "best_validation_miou": curve[best_step]["unseen_miou"],
        "seconds": round(time.perf_counter() - started, 1),
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> None:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=6, help="annotated slices")
    parser.add_argument("--seed", type=int, default=0, help="sample and training seed")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--every", type=int, default=100, help="score the unseen slices")
    parser.add_argument("--train", default="{}", help="TrainConfig overrides as JSON")
    parser.add_argument("--model", default="{}", help="ModelConfig overrides as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(args.threads)
    with retained_freed_memory():
        print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
