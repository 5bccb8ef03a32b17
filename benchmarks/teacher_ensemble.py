"""Teachers on one fish, trained with different seeds: each alone, and their average.

    .venv/bin/python benchmarks/teacher_ensemble.py --seed 0
    .venv/bin/python benchmarks/teacher_ensemble.py --seed 2 --train-seeds 102

``teacher_quality.py`` ties the training seed to the sample's seed, so its spread over three
seeds mixes fish with training luck. Here one fish (``make_medaka(n_annotated=6, seed=SEED)``)
gets two teachers with the engine's defaults (``TrainConfig(seed=SEED)``, the one
``teacher_quality.py`` trains, and ``TrainConfig(seed=100 + SEED)``; ``--train-seeds`` gives
others); each is scored on the unannotated slices (mIoU over the nine organs, IoU per organ),
then, with two or more, the mean of their softmax probabilities (an ensemble of separately
trained teachers; the product's ``ModelConfig.members`` trains them side by side, measured by
``teacher_quality.py --model '{"members": 3}'``). Each member's record is logged to stderr as it
ends; one JSON object is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import TrainConfig
from napari_distill.core.evaluation import evaluate_semantic
from napari_distill.core.inference import predict_bundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import MedakaSample, make_medaka
from napari_distill.core.training import train_teacher

SECOND_SEED_OFFSET = 100


def scores(
    probabilities: np.ndarray, class_ids: tuple[int, ...], sample: MedakaSample, unseen: list[int]
) -> tuple[float, dict[str, float]]:
    """mIoU over the organs and IoU per organ of the argmax of ``probabilities (K, N, H, W)``."""
    labels = np.asarray(class_ids)[probabilities.argmax(0)]
    organs = sorted(sample.class_names)
    result = evaluate_semantic(labels, sample.labels_full, class_ids=[0, *organs], slices=unseen)
    per_organ = {sample.class_names[c]: round(result["iou"][c], 3) for c in organs}
    return round(result["mean_iou"], 4), per_organ


def run(seed: int, train_seeds: list[int] | None = None) -> dict[str, Any]:
    sample = make_medaka(n_annotated=6, seed=seed)
    annotated = set(sample.annotated.tolist())
    unseen = [i for i in range(sample.image.shape[0]) if i not in annotated]
    members, total, class_ids = [], None, ()
    for train_seed in train_seeds or (seed, SECOND_SEED_OFFSET + seed):
        started = time.perf_counter()
        training = train_teacher(
            sample.image, sample.labels_sparse, train_config=TrainConfig(seed=train_seed),
            device="cpu",
        )  # fmt: skip
        bundle = run_to_completion(training.steps())
        prediction = run_to_completion(
            predict_bundle(bundle, sample.image, slices=unseen, device="cpu")
        )
        probabilities = np.asarray(prediction.probabilities)
        class_ids = bundle.class_ids
        miou, per_organ = scores(probabilities, class_ids, sample, unseen)
        members.append(
            {
                "train_seed": train_seed,
                "miou": miou,
                "iou": per_organ,
                "seconds": round(time.perf_counter() - started),
            }
        )
        print(json.dumps(members[-1]), file=sys.stderr, flush=True)
        total = probabilities if total is None else total + probabilities
    result: dict[str, Any] = {"seed": seed, "members": members}
    if len(members) > 1:
        result["ensemble_miou"], result["ensemble_iou"] = scores(total, class_ids, sample, unseen)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the fish (and the first teacher)")
    parser.add_argument(
        "--train-seeds",
        help="training seeds, comma separated (default: SEED and 100 + SEED)",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_seeds = [int(v) for v in args.train_seeds.split(",")] if args.train_seeds else None
    with retained_freed_memory():
        print(json.dumps(run(args.seed, train_seeds)))


if __name__ == "__main__":
    main()
