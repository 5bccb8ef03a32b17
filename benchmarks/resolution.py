"""The same fish at finer in-plane resolutions: a default teacher against one that downsamples.

    .venv/bin/python benchmarks/resolution.py --resolutions 2 --downsample 1,2 --seeds 0 \\
        --jobs 2 --json resolution.json

Real micro-CT slices are often several times larger (in pixels) than the synthetic sample's
256 x 128, for the same anatomy. ``make_medaka(shape=(96, 256 r, 128 r), n_annotated=k,
seed=seed)`` draws the same fish at ``r`` times the in-plane resolution (anatomy and texture
scale with the shape; the annotated slices are the same). For each resolution ``r`` and each
``--downsample`` factor ``d``, a teacher is trained with the engine's defaults except
``ModelConfig(downsample=d)`` (the network works at ``1/d`` of the image's pixels per side; the
training patches stay 96 px at that scale) and scored as ``teacher_quality.py`` scores: mIoU
over the nine organs, background left out, on every unannotated slice, at the image's own
resolution. One JSON object is printed or written.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import multiprocessing
import platform
import time
from typing import Any

import torch

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import ModelConfig
from napari_distill.core.samples import REFERENCE_SHAPE, make_medaka

# benchmarks/ is on sys.path when run as a script
from teacher_quality import organ_scores, predict, train

log = logging.getLogger("resolution")


def one_run(k: int, seed: int, resolution: int, downsample: int, steps: int | None) -> dict:
    """Train and score one teacher (in a worker process when ``--jobs`` > 1)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    shape = (REFERENCE_SHAPE[0], REFERENCE_SHAPE[1] * resolution, REFERENCE_SHAPE[2] * resolution)
    sample = make_medaka(shape=shape, n_annotated=k, seed=seed)
    annotated = set(sample.annotated.tolist())
    unannotated = [i for i in range(shape[0]) if i not in annotated]
    with retained_freed_memory():  # as the CLI and the widgets train
        bundle, facts = train(
            sample.image, sample.labels_sparse, seed, steps, rgb=False,
            model_config=ModelConfig(downsample=downsample),
        )  # fmt: skip
        labels, predict_s = predict(bundle, sample.image, unannotated, rgb=False)
    record = {
        "k": k,
        "seed": seed,
        "resolution": resolution,
        "shape": list(shape),
        "downsample": downsample,
        **organ_scores(sample, labels, unannotated),
        "predict_s": predict_s,
        **facts,
    }
    log.info(
        "resolution %dx, downsample %d, seed %d: mIoU %.3f (train %.0f s, predict %.0f s)",
        resolution, downsample, seed, record["miou"], facts["train_s"], predict_s,
    )  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=6, help="annotated slices")
    parser.add_argument("--seeds", default="0", help="sample and training seeds")
    parser.add_argument("--resolutions", default="1,2", help="in-plane factors of the sample")
    parser.add_argument("--downsample", default="1,2", help="ModelConfig.downsample values")
    parser.add_argument("--steps", type=int, help="fixed steps (default: the automatic budget)")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once")
    parser.add_argument("--json", help="write the results here (rewritten after every run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    tasks = [
        (args.k, int(seed), int(resolution), int(factor), args.steps)
        for resolution in args.resolutions.split(",")
        for factor in args.downsample.split(",")
        for seed in args.seeds.split(",")
    ]
    started = time.perf_counter()
    result: dict[str, Any] = {
        "command": "benchmarks/resolution.py " + " ".join(argv or []),
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "runs": [],
    }
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        for record in pool.map(one_run, *zip(*tasks, strict=True)):
            result["runs"].append(record)
            result["total_s"] = round(time.perf_counter() - started, 1)
            if args.json:
                with open(args.json, "w") as file:
                    json.dump(result, file, indent=2)
    if not args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
