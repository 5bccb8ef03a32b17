"""Paint where the teacher is least sure: k0 spread slices, then ``add`` slices it points to.

The product's review ranks the unannotated slices by the teacher's confidence in its own
pseudo-label (*Rank by: teacher confidence*, *Jump to worst*; ``quality-score`` and ``run``'s
report list the least sure slices). This measures the workflow that ranking invites, against
painting the same number of slices spread over the fish:

1. ``make_medaka(n_annotated=k0, seed=seed)``: k0 slices spread over the organs are painted; a
   teacher is trained with the default settings (as ``teacher_quality.py``) and predicts every
   other slice.
2. The unannotated slices are ranked by :func:`pseudo_label_confidence`, least sure first. The
   user paints the first ``add`` of them, skipping a slice whose ground truth holds no organ
   (there is nothing to paint on it, so it would not count as annotated: recorded as skipped).
3. A new teacher (same settings and seed) is trained on the k0 + add painted slices and scored
   like ``teacher_quality.py``: mIoU over the organs on every slice not painted.

``--min-foreground-share S`` ranks only the slices where the first teacher labels at least
``S`` times the largest foreground it labels on any slice (slices with organs, not the
specimen's thin ends). Compare with ``teacher_quality.py --ks K`` for K = k0 + add (slices
spread over the organs). ``--jobs N`` runs N seeds at once with ``--threads`` (default 1) torch
threads each. Prints the JSON when no ``--json`` is given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import ModelConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import pseudo_label_confidence
from napari_distill.core.samples import make_medaka
from teacher_quality import organ_scores, predict, summary, train

log = logging.getLogger("active_slices")


def confidence_ranking(bundle, image: np.ndarray, slices: list[int]) -> tuple[np.ndarray, dict]:
    """The teacher's labels on ``slices`` and its confidence in each, ``{slice: confidence}``."""
    prediction = run_to_completion(
        predict_bundle(bundle, image, device="cpu", slices=slices, rgb=False)
    )
    background = bundle.class_ids.index(0)
    confidence = {
        index: pseudo_label_confidence(prediction.probabilities[:, index], background)
        for index in slices
    }
    return np.asarray(prediction.labels), confidence


def one_seed(
    seed: int, k0: int, add: int, steps: int | None, threads: int, min_share: float = 0.0
) -> dict[str, Any]:
    """Both teachers of one fish, the slices painted in between and their scores."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    model_config = ModelConfig()
    sample = make_medaka(n_annotated=k0, seed=seed)
    n_slices = sample.image.shape[0]
    spread = sample.annotated.tolist()
    with retained_freed_memory():
        first, first_facts = train(
            sample.image, sample.labels_sparse, seed, steps, False, model_config
        )
        unannotated = np.setdiff1d(np.arange(n_slices), spread).tolist()
        first_labels, confidence = confidence_ranking(first, sample.image, unannotated)
        area = {i: int(np.count_nonzero(first_labels[i])) for i in unannotated}
        largest = max(area.values())
        eligible = [i for i in unannotated if area[i] >= min_share * largest]
        ranked = sorted(eligible, key=lambda i: (confidence[i], i))
        picked: list[int] = []
        skipped: list[int] = []
        for index in ranked:
            if len(picked) == add:
                break
            (picked if sample.labels_full[index].any() else skipped).append(index)
        painted = sorted(spread + picked)
        labels = np.zeros_like(sample.labels_full)
        labels[painted] = sample.labels_full[painted]
        second, second_facts = train(sample.image, labels, seed, steps, False, model_config)
        rest = np.setdiff1d(np.arange(n_slices), painted).tolist()
        second_labels, _ = predict(second, sample.image, rest, rgb=False)
    first_scores = organ_scores(sample, first_labels, unannotated)
    second_scores = organ_scores(sample, second_labels, rest)
    painted_pixels = {
        name: int(np.count_nonzero(sample.labels_full[painted] == class_id))
        for class_id, name in sample.class_names.items()
    }
    result = {
        "seed": seed,
        "min_foreground_share": min_share,
        "spread_slices": spread,
        "picked_slices": picked,
        "picked_confidence": [round(confidence[i], 4) for i in picked],
        "skipped_slices": skipped,
        "first_miou": first_scores["miou"],
        "first_iou": first_scores["iou"],
        "miou": second_scores["miou"],
        "iou": second_scores["iou"],
        "painted_pixels": painted_pixels,
        "first_train_s": first_facts["train_s"],
        "train_s": second_facts["train_s"],
        "steps": [first_facts["steps"], second_facts["steps"]],
    }
    log.info(
        "seed %d: spread %s -> mIoU %.3f; + least sure %s (skipped %s) -> mIoU %.3f",
        seed, spread, result["first_miou"], picked, skipped, result["miou"],
    )  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k0", type=int, default=3, help="slices spread over the organs first")
    parser.add_argument("--add", type=int, default=3, help="least sure slices painted next")
    parser.add_argument("--seeds", default="0,1,2", help="sample and training seeds")
    parser.add_argument("--steps", type=int, help="fixed steps (default: the automatic budget)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per seed")
    parser.add_argument(
        "--min-foreground-share",
        type=float,
        default=0.0,
        help="rank only slices where the first teacher labels at least this share of the "
        "largest foreground it labels on any slice (0: every unannotated slice, as the review)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    seeds = [int(v) for v in args.seeds.split(",")]
    started = time.perf_counter()
    jobs = [
        (seed, args.k0, args.add, args.steps, args.threads, args.min_foreground_share)
        for seed in seeds
    ]
    if args.jobs == 1:
        runs = [one_seed(*job) for job in jobs]
    else:
        context = multiprocessing.get_context("spawn")  # no fork of torch's thread pools
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            runs = list(pool.map(one_seed, *zip(*jobs, strict=True)))
    payload = {
        "benchmark": "active_slices",
        "command": " ".join(["benchmarks/active_slices.py", *(argv or sys.argv[1:])]),
        "settings": {
            "k0": args.k0,
            "add": args.add,
            "steps": args.steps,
            "min_foreground_share": args.min_foreground_share,
        },
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "runs": runs,
        "summary": {
            "first_miou": summary([run["first_miou"] for run in runs]),
            "miou": summary([run["miou"] for run in runs]),
        },
        "wall_s": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(payload, indent=2, default=float)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
        log.info("wrote %s", args.json)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
