"""Does distillation pay? Method 1 against its baselines on the synthetic Medaka sample.

    .venv/bin/python benchmarks/distill_quality.py --json benchmarks/results/distill_quality.json

For every number of annotated slices ``k`` (``--ks``, default 4 and 8) and seed (``--seeds``,
default 0 1 2; the seed also changes the fish), the mean IoU over the nine organs on the
*unannotated* slices, against the full ground truth, of:

1. ``teacher``: the teacher trained on the k annotated slices;
2. ``naive_self_training``: a student on every unannotated slice's pseudo-label, CE alone;
3. ``filtered_ce``: a student on the slices the quality classifier accepts, CE alone;
4. ``filtered_kd``: the method: accepted slices, CE + T^2 KL (``KDConfig`` defaults);
5. ``all_annotated``: the same network trained with every slice annotated (the ceiling),
   for the teacher's and a student's steps together;
6. ``teacher_matched_compute``: the teacher trained further on the annotated slices alone,
   for the steps a student gets (strategy ``kd`` with no accepted slice and no KD term).

"CE alone" is the student's supervised loss without the KD term (the teacher's CE + Dice).
Students start from the teacher's weights. Every run has a fixed step budget (early stopping
off; the best validation weights are kept). Also reported: the quality classifier's Spearman
(held-out annotated slices) and ``student_cost_ratio`` (inference time of
``ModelConfig.student()`` over the teacher's configuration). Prints the JSON when no
``--json`` is given.

On two cores the two values of k can run side by side (``--ks 4 --threads 1`` and
``--ks 8 --threads 1``, each with its own ``--json``); ``--merge A.json B.json --json OUT``
then joins their results into one file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_distill.core.config import KDConfig, ModelConfig, QualityConfig, TrainConfig
from napari_distill.core.evaluation import mean_iou
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import ModelBundle, build_model
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import SnapshotRecorder, fit_quality, score_slices
from napari_distill.core.samples import make_medaka
from napari_distill.core.strategies import get_strategy
from napari_distill.core.training import train_teacher

log = logging.getLogger("distill_quality")

METHODS = (
    "teacher",
    "naive_self_training",
    "filtered_ce",
    "filtered_kd",
    "all_annotated",
    "teacher_matched_compute",
)


def evaluate(bundle: ModelBundle, image: np.ndarray, truth: np.ndarray, slices: list[int]) -> float:
    """mIoU over the foreground classes on ``slices``."""
    prediction = run_to_completion(
        predict_bundle(bundle, image, device="cpu", slices=slices, keep_probabilities=False)
    )
    return 100.0 * mean_iou(
        prediction.labels, truth, class_ids=bundle.class_ids, ignore_background=True, slices=slices
    )


def train(run) -> ModelBundle:
    return run_to_completion(run.steps())


@dataclasses.dataclass
class Prepared:
    """What every student of one (k, seed) starts from."""

    image: np.ndarray
    labels: np.ndarray
    truth: np.ndarray
    unannotated: list[int]
    fixed: TrainConfig
    teacher: ModelBundle
    pseudo_labels: np.ndarray
    accepted: list[int]
    spearman: float
    seconds: dict[str, float]


def prepare(k: int, seed: int, steps: int, quality_steps: int) -> Prepared:
    """The sample, a teacher of ``steps`` steps, its pseudo-labels and the accepted slices."""
    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    sample = make_medaka(n_annotated=k, seed=seed)
    image, labels, truth = sample.image, sample.labels_sparse, sample.labels_full
    unannotated = [i for i in range(image.shape[0]) if i not in set(sample.annotated.tolist())]
    seconds["sample"] = time.perf_counter() - clock

    fixed = TrainConfig(steps=steps, patience=10**6, seed=seed)
    clock = time.perf_counter()
    run = train_teacher(image, labels, train_config=fixed, device="cpu")
    recorder = SnapshotRecorder(run.model)
    teacher = run_to_completion(recorder.record(run.steps()))
    seconds["teacher"] = time.perf_counter() - clock

    clock = time.perf_counter()
    prediction = run_to_completion(predict_bundle(teacher, image, device="cpu"))
    quality_config = QualityConfig(steps=quality_steps, seed=seed)
    quality = run_to_completion(
        fit_quality(
            teacher, image, labels, config=quality_config,
            teacher_snapshots=recorder.snapshots, device="cpu",
        )
    )  # fmt: skip
    scores = run_to_completion(score_slices(quality, image, prediction, device="cpu")).quality
    accepted = [i for i in unannotated if scores[i] >= quality_config.tau]
    seconds["quality"] = time.perf_counter() - clock
    log.info(
        "k=%d seed=%d: teacher %.0f s, quality %.0f s, %d of %d slices accepted",
        k, seed, seconds["teacher"], seconds["quality"], len(accepted), len(unannotated),
    )  # fmt: skip
    spearman = quality.report.spearman if quality.report else float("nan")
    return Prepared(
        image, labels, truth, unannotated, fixed, teacher, np.asarray(prediction.labels),
        accepted, spearman, seconds,
    )  # fmt: skip


def train_student(
    prepared: Prepared, slices: list[int], config: KDConfig, train_config: TrainConfig | None = None
) -> float:
    """mIoU on the unannotated slices of a ``kd`` student on ``slices`` with ``config``."""
    run = get_strategy("kd").build(
        prepared.teacher, prepared.image, prepared.labels, slices,
        train_config=train_config or prepared.fixed, strategy_config=config, device="cpu",
        pseudo_labels=prepared.pseudo_labels,
    )  # fmt: skip
    return evaluate(train(run), prepared.image, prepared.truth, prepared.unannotated)


def one_run(k: int, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Every method for one (k, seed); scores in mIoU points, seconds per piece."""
    prepared = prepare(k, seed, args.steps, args.quality_steps)
    image, truth, unannotated = prepared.image, prepared.truth, prepared.unannotated
    teacher, accepted, fixed = prepared.teacher, prepared.accepted, prepared.fixed
    seconds = prepared.seconds
    result: dict[str, Any] = {
        "seed": seed,
        "spearman": prepared.spearman,
        "n_accepted": len(accepted),
        "n_unannotated": len(unannotated),
    }
    # The true IoU of the accepted vs the rejected pseudo-labels: does the filter filter?
    result["teacher"] = evaluate(teacher, image, truth, unannotated)
    if accepted:
        result["pseudo_miou_accepted"] = 100.0 * mean_iou(
            prepared.pseudo_labels, truth, class_ids=teacher.class_ids,
            ignore_background=True, slices=accepted,
        )  # fmt: skip

    students = {
        "naive_self_training": (unannotated, KDConfig(lambda_kd=0.0)),
        "filtered_ce": (accepted, KDConfig(lambda_kd=0.0)),
        "filtered_kd": (accepted, KDConfig()),
        "teacher_matched_compute": ([], KDConfig(lambda_kd=0.0)),
    }
    for name, (slices, strategy_config) in students.items():
        clock = time.perf_counter()
        result[name] = train_student(prepared, slices, strategy_config)
        seconds[name] = time.perf_counter() - clock
        log.info("k=%d seed=%d %s: %.2f mIoU (%.0f s)", k, seed, name, result[name], seconds[name])

    clock = time.perf_counter()
    ceiling = dataclasses.replace(fixed, steps=2 * args.steps)
    full = train(train_teacher(image, truth, train_config=ceiling, device="cpu"))
    result["all_annotated"] = evaluate(full, image, truth, unannotated)
    seconds["all_annotated"] = time.perf_counter() - clock
    result["seconds"] = seconds
    log.info("k=%d seed=%d: %s", k, seed, {m: round(result[m], 2) for m in METHODS})
    return result


def cost_ratio(repeats: int = 20) -> float:
    """Median forward time of the student configuration over the teacher's (one CT slice)."""
    teacher_config = ModelConfig(num_classes=10)
    times = {}
    x = torch.randn(1, 1, 256, 128)
    for name, config in (("teacher", teacher_config), ("student", teacher_config.student())):
        model = build_model(config).eval()
        runs = []
        with torch.inference_mode():
            model(x)
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                runs.append(time.perf_counter() - start)
        times[name] = statistics.median(runs)
    return times["student"] / times["teacher"]


def summarise(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if np.isfinite(v)]
    return {
        "mean": float(np.mean(finite)) if finite else float("nan"),
        "std": float(np.std(finite)) if finite else float("nan"),
        "runs": [float(v) for v in values],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here (else print them)")
    parser.add_argument("--ks", type=int, nargs="+", default=[4, 8], help="annotated slices")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=300, help="teacher and student steps")
    parser.add_argument("--quality-steps", type=int, default=QualityConfig.steps)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--merge", nargs="+", metavar="JSON", help="join these results files into --json; no run"
    )
    args = parser.parse_args(argv)
    if args.merge:
        if not args.json:
            parser.error("--merge needs --json for the joined file")
        _write(args.json, merge([json.loads(Path(p).read_text()) for p in args.merge]))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("napari_distill",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "settings": {
            "ks": args.ks,
            "seeds": args.seeds,
            "steps": args.steps,
            "quality_steps": args.quality_steps,
            "tau": QualityConfig.tau,
            "kd": dataclasses.asdict(KDConfig()),
            "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
            "torch": torch.__version__,
        }
    }
    ratio = cost_ratio()
    for k in args.ks:
        runs = [one_run(k, seed, args) for seed in args.seeds]
        entry: dict[str, Any] = {m: summarise([r[m] for r in runs]) for m in METHODS}
        entry["spearman"] = summarise([r["spearman"] for r in runs])
        entry["n_accepted"] = [r["n_accepted"] for r in runs]
        entry["n_unannotated"] = runs[0]["n_unannotated"]
        entry["pseudo_miou_accepted"] = [r.get("pseudo_miou_accepted") for r in runs]
        entry["seconds"] = [r["seconds"] for r in runs]
        entry["student_cost_ratio"] = ratio
        out[str(k)] = entry
        if args.json:  # partial results survive an interrupted run
            _write(args.json, out)
    out["total_seconds"] = time.perf_counter() - started
    if args.json:
        _write(args.json, out)
    else:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Results of runs over different k, joined: one settings block, every k's entry."""
    out: dict[str, Any] = {"settings": dict(results[0]["settings"])}
    for result in results:
        mismatched = {
            key
            for key, value in result["settings"].items()
            if key not in ("ks", "machine") and value != out["settings"].get(key)
        }
        if mismatched:
            raise ValueError(f"these runs differ in {sorted(mismatched)}: not comparable")
        out.update({key: value for key, value in result.items() if key.isdigit()})
    out["settings"]["ks"] = sorted(int(key) for key in out if key.isdigit())
    out["total_seconds"] = sum(result.get("total_seconds", 0.0) for result in results)
    return out


def _write(path: str, payload: dict[str, Any]) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
