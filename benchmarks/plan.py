"""The teacher with today's fixed defaults against the teacher with the plan from the data.

On the Medaka sample with ``k`` painted slices (spread over the organs, as the sample chooses
them) and several seeds (the seed changes the fish and the training): the same step budget for
both (``--steps``), then a prediction of every unpainted slice. Score: mean IoU over the nine
organs (background left out) on the unpainted slices, against the full ground truth.

    python benchmarks/plan.py --k 3 --seeds 0,1,2 --steps 400 --threads 1 --json plan.json
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_distill.core.config import PredictConfig, TrainConfig
from napari_distill.core.device import set_cpu_threads
from napari_distill.core.evaluation import evaluate_semantic
from napari_distill.core.inference import predict_bundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_medaka
from napari_distill.core.training import plan_for_data, train_teacher

log = logging.getLogger("plan_benchmark")


def one_run(k: int, seed: int, steps: int, planned: bool) -> dict[str, Any]:
    sample = make_medaka(n_annotated=k, seed=seed)
    unpainted = [i for i in range(sample.image.shape[0]) if i not in set(sample.annotated)]
    plan = None
    if planned:
        plan = plan_for_data(
            sample.image, sample.labels_sparse, spacing=sample.scale, device="cpu",
            given={"steps": steps}, class_names=sample.class_names,
        )  # fmt: skip
    started = time.perf_counter()
    run = train_teacher(
        sample.image, sample.labels_sparse, train_config=TrainConfig(steps=steps, seed=seed),
        device="cpu", plan=plan,
    )  # fmt: skip
    bundle = run_to_completion(run.steps())
    train_s = time.perf_counter() - started
    prediction = run_to_completion(
        predict_bundle(bundle, sample.image, config=PredictConfig(), device="cpu",
                       slices=unpainted, keep_probabilities=False)
    )  # fmt: skip
    organs = sorted(sample.class_names)
    scores = evaluate_semantic(
        np.asarray(prediction.labels), sample.labels_full, class_ids=[0, *organs], slices=unpainted
    )
    return {
        "k": k,
        "seed": seed,
        "setting": "plan" if planned else "defaults",
        "steps": run.step,
        "miou": scores["mean_iou"],
        "iou": {sample.class_names[c]: scores["iou"][c] for c in organs},
        "train_s": round(train_s, 1),
        "decisions": [] if plan is None else [d.to_dict() for d in plan.decisions],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    set_cpu_threads(args.threads)
    out = Path(args.json)
    runs: list[dict[str, Any]] = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for planned in (False, True):
            record = one_run(args.k, seed, args.steps, planned)
            runs.append(record)
            log.info("k=%d seed %d %s: mIoU %.3f (%.0f s)", args.k, seed, record["setting"],
                     record["miou"], record["train_s"])  # fmt: skip
            out.write_text(json.dumps({"runs": runs}, indent=1))
    summary = {}
    for setting in ("defaults", "plan"):
        values = [r["miou"] for r in runs if r["setting"] == setting]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[setting] = {"mean": statistics.mean(values), "std": spread, "per_seed": values}
        log.info("%s: %.3f ± %.3f", setting, summary[setting]["mean"], spread)
    out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
