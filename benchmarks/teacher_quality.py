"""How good is the teacher alone, with the engine's default settings, on the CPU?

    .venv/bin/python benchmarks/teacher_quality.py --json benchmarks/results/teacher_quality.json

**Medaka.** For every number of annotated slices ``k`` (``--ks``, default 3, 6, 12) and seed
(``--seeds``, default 0, 1, 2), a synthetic Medaka micro-CT (``make_medaka(n_annotated=k,
seed=seed)``: the seed changes the fish *and* the training seed; the k annotated slices are
spread over the slices that show organs, as the sample chooses them). A teacher is trained with
``TrainConfig()`` / ``ModelConfig()`` defaults (``steps=None``: the automatic budget, with
early stopping when there are at least three validation slices, and the final weights kept
when the schedule completes; ``--steps`` fixes the budget) and predicts every *unannotated*
slice through ``core.inference.predict_bundle``. Score: mean IoU over the nine organs
(background left out; an organ the teacher never saw counts as 0) on those slices against the
full ground truth.

**Pap smear.** ``make_pap_smear(seed=seed)`` (four 512 x 512 RGB fields, the first annotated):
Dice of cytoplasm and nuclei on the three unannotated fields, and the AJI of nuclei split into
instances by ``core.instances.apply_instance_config`` (distance transform + watershed) against
``sample.nuclei``.

Also recorded per run: steps taken, why training stopped, training seconds, seconds per step,
prediction seconds. ``--quick`` runs k = 6 and seed 0 only (a smoke test). ``--jobs N`` runs
N trainings at once in separate processes with ``2 // N`` threads or at least one each
(``--threads`` sets it; the scores do not change; the seconds then measure a shared machine).
``--model '{"deep_supervision": false}'`` changes ``ModelConfig`` fields for an ablation (recorded
in the JSON's settings). ``--mirror`` also scores each Medaka teacher's prediction averaged
with its three mirror images (``PredictConfig(mirror=True)``: ``miou_mirror``, ``iou_mirror``).
Prints the JSON when no ``--json`` is given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import InstanceConfig, ModelConfig, PredictConfig, TrainConfig
from napari_distill.core.evaluation import aji, apply_instance_config, evaluate_semantic
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import ensemble_members
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import MedakaSample, make_medaka, make_pap_smear
from napari_distill.core.training import train_teacher

log = logging.getLogger("teacher_quality")

NUCLEUS, CYTOPLASM = 2, 1  # Pap smear class ids (core.samples.PAP_CLASSES)


def train(
    image: np.ndarray,
    labels: np.ndarray,
    seed: int,
    steps: int | None,
    rgb: bool,
    model_config: ModelConfig,
):
    """Train a teacher with the default settings; return the best bundle and run facts."""
    started = time.perf_counter()
    run = train_teacher(
        image,
        labels,
        model_config=model_config,
        train_config=TrainConfig(steps=steps, seed=seed),
        device="cpu",
        rgb=rgb,
    )
    bundle = run_to_completion(run.steps())
    seconds = time.perf_counter() - started
    facts = {
        "steps": run.step,
        "planned_steps": run.total_steps,
        "stop_reason": run.stop_reason,
        "early_stopping": run.early_stopping,
        "kept_step": run.best_step,
        "kept_validation_dice": run.best_score,
        "train_s": round(seconds, 1),
        "s_per_step": round(seconds / max(1, run.step), 3),
    }
    return bundle, facts


def predict(
    bundle, image: np.ndarray, slices: list[int], rgb: bool, mirror: bool = False
) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    prediction = run_to_completion(
        predict_bundle(
            bundle,
            image,
            config=PredictConfig(mirror=mirror),
            device="cpu",
            slices=slices,
            keep_probabilities=False,
            rgb=rgb,
        )  # fmt: skip
    )
    return np.asarray(prediction.labels), round(time.perf_counter() - started, 1)


def organ_scores(sample: MedakaSample, labels: np.ndarray, slices: list[int]) -> dict[str, Any]:
    """``miou`` over the sample's organs (background left out) on ``slices`` against the full
    ground truth, and ``iou``: each organ's IoU by name."""
    organs = sorted(sample.class_names)
    scores = evaluate_semantic(labels, sample.labels_full, class_ids=[0, *organs], slices=slices)
    iou = {sample.class_names[c]: scores["iou"][c] for c in organs}
    return {"miou": scores["mean_iou"], "iou": iou}


def medaka_run(
    k: int, seed: int, steps: int | None, model_config: ModelConfig, mirror: bool = False
) -> dict[str, Any]:
    sample = make_medaka(n_annotated=k, seed=seed)
    annotated = set(sample.annotated.tolist())
    unannotated = [i for i in range(sample.image.shape[0]) if i not in annotated]
    bundle, facts = train(
        sample.image, sample.labels_sparse, seed, steps, rgb=False, model_config=model_config
    )
    labels, predict_s = predict(bundle, sample.image, unannotated, rgb=False)
    record = {
        "k": k,
        "seed": seed,
        "annotated": sorted(annotated),
        **organ_scores(sample, labels, unannotated),
        "predict_s": predict_s,
        **facts,
    }
    if mirror:
        mirrored = predict(bundle, sample.image, unannotated, False, mirror=True)[0]
        scores = organ_scores(sample, mirrored, unannotated)
        record["miou_mirror"], record["iou_mirror"] = scores["miou"], scores["iou"]
    members = ensemble_members(bundle.model)
    if len(members) > 1:  # each member alone, to compare the ensemble with its parts
        single = bundle.model_config.single()
        member_scores = [
            organ_scores(
                sample,
                predict(
                    dataclasses.replace(bundle, model=member, model_config=single),
                    sample.image,
                    unannotated,
                    rgb=False,
                )[0],
                unannotated,
            )  # fmt: skip
            for member in members
        ]
        record["member_miou"] = [s["miou"] for s in member_scores]
        record["member_iou"] = [s["iou"] for s in member_scores]
    return record


def pap_run(seed: int, steps: int | None, model_config: ModelConfig) -> dict[str, Any]:
    sample = make_pap_smear(seed=seed)
    annotated = set(sample.annotated.tolist())
    unannotated = [i for i in range(sample.image.shape[0]) if i not in annotated]
    bundle, facts = train(
        sample.image, sample.labels_sparse, seed, steps, rgb=True, model_config=model_config
    )
    labels, predict_s = predict(bundle, sample.image, unannotated, rgb=True)
    scores = evaluate_semantic(
        labels, sample.semantic_full, class_ids=[0, CYTOPLASM, NUCLEUS], slices=unannotated
    )
    config = InstanceConfig(mode="instances", instance_classes=(NUCLEUS,))
    nuclei = apply_instance_config(labels, config)
    return {
        "seed": seed,
        "annotated": sorted(annotated),
        "dice_cytoplasm": scores["dice"][CYTOPLASM],
        "dice_nuclei": scores["dice"][NUCLEUS],
        "aji_nuclei": aji(nuclei, sample.nuclei, unannotated),
        "predict_s": predict_s,
        **facts,
    }


def run_task(
    task: tuple[str, int, int, int | None],
    threads: int,
    model_overrides: dict[str, Any],
    mirror: bool = False,
) -> dict[str, Any]:
    """One training and its scores (in a worker process when ``--jobs`` > 1)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    kind, k, seed, steps = task
    model_config = ModelConfig(**model_overrides)
    if kind == "medaka":
        with retained_freed_memory():  # as the CLI and the widgets train
            result = medaka_run(k, seed, steps, model_config, mirror)
        log.info(
            "medaka k=%d seed=%d: mIoU %.3f%s, %d steps (%s), %.0f s",
            k, seed, result["miou"],
            f" (mirrored {result['miou_mirror']:.3f})" if mirror else "",
            result["steps"], result["stop_reason"], result["train_s"],
        )  # fmt: skip
    else:
        with retained_freed_memory():
            result = pap_run(seed, steps, model_config)
        log.info(
            "pap seed=%d: Dice cytoplasm %.3f nuclei %.3f, AJI %.3f, %d steps, %.0f s",
            seed, result["dice_cytoplasm"], result["dice_nuclei"], result["aji_nuclei"],
            result["steps"], result["train_s"],
        )  # fmt: skip
    return result


def summary(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {
        "mean": float(np.mean(values)),
        "std": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def make_payload(
    args: argparse.Namespace,
    done: list[tuple[tuple[str, int, int, int | None], dict[str, Any]]],
    threads: int,
    seconds: float,
) -> dict[str, Any]:
    """The JSON report of the runs done so far."""
    medaka = [result for task, result in done if task[0] == "medaka"]
    pap = [result for task, result in done if task[0] == "pap"]
    keys = ("miou", "train_s", "steps", "s_per_step")
    ks = sorted({result["k"] for result in medaka})
    return {
        "command": " ".join(["benchmarks/teacher_quality.py", *args.argv]),
        "settings": {
            "ks": args.ks,
            "seeds": args.seeds,
            "steps": args.steps,
            "train_config": dataclasses.asdict(TrainConfig()),
            "model_config": dataclasses.asdict(ModelConfig(**args.model)),
            "mirror": args.mirror,
        },
        "machine": {
            "platform": platform.platform(),
            "torch": torch.__version__,
            "jobs": args.jobs,
            "threads_per_job": threads,
        },
        "medaka": {
            str(k): {key: summary([r[key] for r in medaka if r["k"] == k]) for key in keys}
            for k in ks
        },
        "pap_smear": {
            key: summary([r[key] for r in pap])
            for key in ("dice_cytoplasm", "dice_nuclei", "aji_nuclei", "train_s", "steps")
        }
        if pap
        else None,
        "runs": {"medaka": medaka, "pap_smear": pap},
        "total_s": round(seconds, 1),
    }


def merged_runs(
    path: str | None, tasks: list[tuple[str, int, int, int | None]]
) -> tuple[list[tuple[tuple[str, int, int, int | None], dict[str, Any]]], list[str]]:
    """The runs of an earlier JSON that ``tasks`` do not redo, and the commands behind them."""
    if path is None:
        return [], []
    earlier = json.loads(Path(path).read_text())
    redone = {(kind, k, seed) for kind, k, seed, _ in tasks}
    runs = [(("medaka", r["k"], r["seed"], None), r) for r in earlier["runs"]["medaka"]]
    runs += [(("pap", 0, r["seed"], None), r) for r in earlier["runs"]["pap_smear"]]
    kept = [(task, r) for task, r in runs if task[:3] not in redone]
    return kept, [earlier["command"], *earlier.get("merged_from", [])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="3,6,12", help="annotated slices, comma separated")
    parser.add_argument("--seeds", default="0,1,2", help="sample and training seeds")
    parser.add_argument("--steps", type=int, help="fixed steps (default: the automatic budget)")
    parser.add_argument("--quick", action="store_true", help="k = 6, seed 0 only")
    parser.add_argument("--no-pap", action="store_true", help="skip the Pap smear sample")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once")
    parser.add_argument(
        "--threads", type=int, help="torch threads per training (default: 2 // jobs, at least 1)"
    )
    parser.add_argument("--json", help="write the results here (rewritten after every run)")
    parser.add_argument(
        "--merge",
        help="a JSON written by this script: its runs are kept unless rerun here (to add the "
        "Pap smear or another k to earlier results; the command of each part is recorded)",
    )
    parser.add_argument(
        "--model",
        type=json.loads,
        default={},
        help='ModelConfig fields to change, as JSON (an ablation), e.g. \'{"deep_supervision": '
        "false}'; channels are always set from the data",
    )
    parser.add_argument(
        "--mirror",
        action="store_true",
        help="also score each Medaka teacher's mirror-averaged prediction (miou_mirror)",
    )
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    args.ks = [6] if args.quick else [int(v) for v in args.ks.split(",") if v.strip()]
    args.seeds = [0] if args.quick else [int(v) for v in args.seeds.split(",")]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    tasks = [("medaka", k, seed, args.steps) for k in args.ks for seed in args.seeds]
    if not args.no_pap:
        tasks += [("pap", 0, seed, args.steps) for seed in args.seeds]
    threads = args.threads or max(1, 2 // args.jobs)
    started = time.perf_counter()
    results: dict[int, dict[str, Any]] = {}
    earlier, earlier_commands = merged_runs(args.merge, tasks)

    def report() -> str:
        done = earlier + [(tasks[i], results[i]) for i in sorted(results)]
        payload = make_payload(args, done, threads, time.perf_counter() - started)
        if earlier_commands:
            payload["merged_from"] = earlier_commands
        text = json.dumps(payload, indent=2, default=float)
        if args.json:  # after every run, so a long run can be read before it ends
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(text)
        return text

    if args.jobs == 1:
        for index, task in enumerate(tasks):
            results[index] = run_task(task, threads, args.model, args.mirror)
            report()
    else:
        context = multiprocessing.get_context("spawn")  # no fork of torch's thread pools
        with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
            futures = {
                pool.submit(run_task, task, threads, args.model, args.mirror): i
                for i, task in enumerate(tasks)
            }
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                report()
    text = report()
    if args.json:
        log.info("wrote %s", args.json)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
