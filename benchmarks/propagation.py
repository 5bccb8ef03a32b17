"""Label propagation on the Medaka sample: how good is it, how well does its leave-one-out
estimate predict that, and how fast is it?

    .venv/bin/python benchmarks/propagation.py --json benchmarks/results/propagation.json

For every number of painted slices ``k`` (``--ks``, default 3, 6) and seed (``--seeds``,
default 0), the synthetic Medaka micro-CT ``make_medaka(n_annotated=k, seed=seed)`` (96 x
256 x 128, nine organs; its k painted slices are taken from the full labels, spread over the
slices that show organs: the same slices as ``teacher_quality.py``'s teachers). Every method
(``--methods``) fills the other slices; per run:

- ``miou``, ``iou``: mean IoU over the nine organs (background left out) on the unpainted
  slices against the full ground truth, and each organ's IoU (``teacher_quality.py``'s
  scoring, so the numbers sit beside its teachers');
- ``loo_miou``: the leave-one-painted-slice-out estimate (each painted slice predicted from
  the others and scored against its paint, pooled), with ``loo_per_slice``;
- ``seconds``, ``seconds_per_slice`` (wall clock, over the unpainted slices), the same in
  CPU seconds of this process (``cpu_seconds``, ``cpu_seconds_per_slice``: the fairer
  number on a shared machine; one thread) and ``loo_seconds``.

Methods are entries of :data:`METHODS`: a function from a :class:`Case` to a
:class:`Outcome`. ``flow_tvl1`` and ``flow_ilk`` are ``PropagationConfig(method="flow")``
with either flow estimator; each run estimates its own flows (so its seconds include them) and
its leave-one-out estimate reuses them, as the ``propagate`` command does. To add a method (a
teacher, a teacher combined with propagation), add a function and an entry.

``combined`` (not a default method) trains a 3-teacher ensemble (``--teacher-steps``, default
300: fewer than the automatic budget, to keep the run within minutes on a CPU), propagates by
TV-L1 flow, compares the two on the painted slices the members held out
(:func:`~napari_distill.core.inference.compare_with_propagation`) and combines them per class;
it records three runs, ``teacher3``, ``flow_tvl1`` and ``combined``, each with
``comparison`` (per class: both sources' leave-out IoU and the choice) and ``loo_miou`` (the
source's mIoU on the held-out slices; the combination's was chosen there, so it flatters).

Prints the JSON; ``--json`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_distill.core.config import ModelConfig, PropagationConfig, TrainConfig
from napari_distill.core.evaluation import (
    LeaveOneOutScore,
    combine_probabilities,
    evaluate_semantic,
)
from napari_distill.core.inference import (
    NeighbourFlows,
    compare_with_propagation,
    predict_bundle,
    propagate,
    propagation_leave_one_out,
)
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import MedakaSample, make_medaka


@dataclass(frozen=True)
class Case:
    """One fish with k painted slices: what every method gets."""

    sample: MedakaSample
    k: int
    seed: int

    @property
    def painted(self) -> list[int]:
        return [int(i) for i in self.sample.annotated]

    @property
    def unpainted(self) -> list[int]:
        return [i for i in range(self.sample.image.shape[0]) if i not in set(self.painted)]


@dataclass
class Outcome:
    """What a method returns: labels of every slice, its seconds, and optionally its
    leave-one-out estimate and anything else worth recording."""

    labels: np.ndarray
    seconds: float
    cpu_seconds: float
    loo: LeaveOneOutScore | None = None
    loo_seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def organ_scores(sample: MedakaSample, labels: np.ndarray, slices: list[int]) -> dict[str, Any]:
    """``miou`` over the organs (background left out) on ``slices``, and each organ's IoU
    (as ``teacher_quality.organ_scores``)."""
    organs = sorted(sample.class_names)
    scores = evaluate_semantic(labels, sample.labels_full, class_ids=[0, *organs], slices=slices)
    return {
        "miou": scores["mean_iou"],
        "iou": {sample.class_names[c]: scores["iou"][c] for c in organs},
    }


def propagation_method(config: PropagationConfig) -> Callable[..., Outcome]:
    """A method that propagates with ``config``, then estimates itself by leave-one-out.

    The method takes the case and, optionally, ``flows`` of the case's image estimated with
    ``config`` (to share with another method; its seconds then count only the flows it adds).
    """

    def run(case: Case, flows: NeighbourFlows | None = None) -> Outcome:
        image, painted = case.sample.image, case.sample.labels_sparse
        started, cpu_started = time.perf_counter(), time.process_time()
        if flows is None and config.method == "flow":
            flows = NeighbourFlows(image, config)
        estimated_before = flows.estimated if flows is not None else 0
        result = run_to_completion(
            propagate(image, painted, config, flows=flows, keep_probabilities=False)
        )
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
        estimated = flows.estimated - estimated_before if flows is not None else 0
        started = time.perf_counter()
        loo = run_to_completion(propagation_leave_one_out(image, painted, config, flows=flows))
        loo_seconds = time.perf_counter() - started
        extra = {"flows_estimated": estimated}
        if flows is not None:
            extra["flows_estimated_for_loo"] = flows.estimated - estimated - estimated_before
        return Outcome(result.labels, seconds, cpu_seconds, loo, loo_seconds, extra)

    return run


# The teacher of the "combined" runs: an ensemble of TEACHERS members (each holds out other
# painted slices, which is what the comparison scores), trained for --teacher-steps steps.
TEACHERS = 3


def combined_runs(case: Case, steps: int) -> list[tuple[str, Outcome]]:
    """A 3-teacher ensemble, TV-L1 flow propagation, their comparison on the painted slices
    the members held out, and the per-class combination: three outcomes ("teacher3",
    "flow_tvl1", "combined"), each with the comparison's per-class leave-out scores."""
    from napari_distill.core.training import stored_splits, train_teacher

    image, painted = case.sample.image, case.sample.labels_sparse
    config = PropagationConfig(method="flow", flow="tvl1")
    started, cpu_started = time.perf_counter(), time.process_time()
    run = train_teacher(
        image, painted, model_config=ModelConfig(members=TEACHERS),
        train_config=TrainConfig(steps=steps, seed=case.seed), device="cpu", rgb=False,
    )  # fmt: skip
    teacher = run_to_completion(run.steps())
    prediction = run_to_completion(predict_bundle(teacher, image, device="cpu", rgb=False))
    teacher_s = time.perf_counter() - started
    teacher_cpu = time.process_time() - cpu_started
    started, cpu_started = time.perf_counter(), time.process_time()
    flows = NeighbourFlows(image, config)
    propagated = run_to_completion(propagate(image, painted, config, flows=flows))
    flow_s, flow_cpu = time.perf_counter() - started, time.process_time() - cpu_started
    started = time.perf_counter()
    comparison = run_to_completion(
        compare_with_propagation(
            teacher, image, painted, stored_splits(teacher), config, device="cpu", rgb=False,
            flows=flows,
        )
    )  # fmt: skip
    compare_s = time.perf_counter() - started
    ids = comparison.class_ids
    where = {c: k for k, c in enumerate(propagated.class_ids)}
    flow_probs = np.zeros(prediction.probabilities.shape, np.float32)
    for k, class_id in enumerate(ids):
        if class_id in where:
            flow_probs[k] = propagated.probabilities[where[class_id]]
    combined = combine_probabilities(comparison, prediction.probabilities, flow_probs, painted)
    combined_labels = np.asarray(ids)[combined.argmax(axis=0)]
    names = case.sample.class_names
    facts = {
        "teacher_steps": run.step,
        "teachers": TEACHERS,
        "held_out": [list(s) for s in comparison.held_out],
        "comparison": {
            **comparison.to_dict(),
            "classes": [{**row, "name": names.get(row["class_id"], row["name"])}
                        for row in comparison.rows()],
        },
        "compare_seconds": compare_s,
    }  # fmt: skip
    return [
        ("teacher3", Outcome(np.asarray(prediction.labels), teacher_s, teacher_cpu, None, None,
                             {**facts, "loo_miou": comparison.teacher_miou})),
        ("flow_tvl1", Outcome(propagated.labels, flow_s, flow_cpu, None, None,
                              {**facts, "loo_miou": comparison.propagation_miou})),
        ("combined", Outcome(combined_labels, teacher_s + flow_s + compare_s,
                             teacher_cpu + flow_cpu, None, None,
                             {**facts, "loo_miou": comparison.combined_miou})),
    ]  # fmt: skip


METHODS: dict[str, Callable[[Case], Outcome]] = {
    "nearest": propagation_method(PropagationConfig(method="nearest")),
    "flow_tvl1": propagation_method(PropagationConfig(method="flow", flow="tvl1")),
    "flow_ilk": propagation_method(PropagationConfig(method="flow", flow="ilk")),
}
# Methods run together by combined_runs (they share the teacher, the flows and the comparison).
GROUPS = ("combined",)


def record(case: Case, name: str, outcome: Outcome) -> dict[str, Any]:
    unpainted = case.unpainted
    row: dict[str, Any] = {
        "k": case.k,
        "seed": case.seed,
        "method": name,
        "painted": case.painted,
        **organ_scores(case.sample, outcome.labels, unpainted),
        "seconds": outcome.seconds,
        "seconds_per_slice": outcome.seconds / len(unpainted),
        "cpu_seconds": outcome.cpu_seconds,
        "cpu_seconds_per_slice": outcome.cpu_seconds / len(unpainted),
    }
    if outcome.loo is not None:
        row["loo_miou"] = outcome.loo.mean_iou
        row["loo_mean_of_slices"] = outcome.loo.mean_of_slices
        row["loo_per_slice"] = {str(i): v for i, v in outcome.loo.per_slice.items()}
        row["loo_seconds"] = outcome.loo_seconds
    row.update(outcome.extra)
    return row


def comparison_summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (k, seed) with a "combined" run: whether the combination is at least as good as the
    better of teacher and flow on the unpainted slices, and whether the leave-out comparison
    ranked the two as the truth does, overall and per organ (``organs_ranked``: organs both
    sources were scored on and not level; ``ranked_right`` None for the others)."""
    out = []
    keys = sorted({(r["k"], r["seed"]) for r in runs if r["method"] == "combined"})
    for k, seed in keys:
        by = {r["method"]: r for r in runs if (r["k"], r["seed"]) == (k, seed)}
        teacher, flow, combined = by["teacher3"], by["flow_tvl1"], by["combined"]
        agree, ranked, organs = 0, 0, {}
        for row in combined["comparison"]["classes"]:
            name = row["name"]
            true_t, true_f = teacher["iou"].get(name), flow["iou"].get(name)
            if true_t is None or true_f is None:
                continue
            # Ranked only where both sources were scored and differ by the margin: elsewhere
            # the comparison had no evidence (a class absent from the held-out slices) or
            # called them level, and took the teacher or the mean by rule.
            decided = row["used"] != "mean" and not (
                math.isnan(row["teacher_iou"]) or math.isnan(row["propagation_iou"])
            )
            right = (row["used"] == "teacher") == (true_t >= true_f) if decided else None
            agree += bool(right)
            ranked += decided
            organs[name] = {
                "true_teacher": true_t, "true_flow": true_f, "loo_teacher": row["teacher_iou"],
                "loo_flow": row["propagation_iou"], "used": row["used"],
                "combined": combined["iou"].get(name), "ranked_right": right,
            }  # fmt: skip
        best = max(teacher["miou"], flow["miou"])
        out.append(
            {
                "k": k, "seed": seed, "teacher": teacher["miou"], "flow": flow["miou"],
                "combined": combined["miou"], "combined_minus_best": combined["miou"] - best,
                "loo_teacher": teacher["loo_miou"], "loo_flow": flow["loo_miou"],
                "overall_ranked_right": (teacher["loo_miou"] >= flow["loo_miou"])
                == (teacher["miou"] >= flow["miou"]),
                "organs_ranked": ranked, "organs_ranked_right": agree, "organs": organs,
            }
        )  # fmt: skip
    return out


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", default="3,6", help="painted slices, comma separated")
    parser.add_argument("--seeds", default="0", help="sample seeds, comma separated")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods, comma separated")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (the propagation itself, SciPy and scikit-image, uses one core)",
    )
    parser.add_argument(
        "--teacher-steps",
        type=int,
        default=300,
        help="training steps of the 3-teacher ensemble of --methods combined",
    )
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument(
        "--summarise", help="only add the comparison summary to this results JSON and print it"
    )
    args = parser.parse_args(argv)
    if args.summarise:
        payload = json.loads(Path(args.summarise).read_text())
        payload["comparison_summary"] = comparison_summary(payload["runs"])
        text = json.dumps(payload, indent=2, default=float)
        Path(args.summarise).write_text(text + "\n")
        print(json.dumps(payload["comparison_summary"], indent=2, default=float))
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS) - set(GROUPS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join([*METHODS, *GROUPS])}")
    import torch

    torch.set_num_threads(args.threads)
    runs = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for k in (int(v) for v in args.ks.split(",")):
            case = Case(make_medaka(n_annotated=k, seed=seed), k, seed)
            outcomes = [
                pair
                for name in methods
                for pair in (
                    combined_runs(case, args.teacher_steps)
                    if name == "combined"
                    else [(name, METHODS[name](case))]
                )
            ]
            for name, outcome in outcomes:
                row = record(case, name, outcome)
                runs.append(row)
                print(
                    f"seed {seed} k {k} {name}: mIoU {row['miou']:.3f}, leave-one-out "
                    f"{row.get('loo_miou', float('nan')):.3f}, {row['seconds_per_slice']:.3f} "
                    f"s/slice ({row['cpu_seconds_per_slice']:.3f} CPU s)",
                    file=sys.stderr,
                    flush=True,
                )
    payload = {
        "benchmark": "propagation",
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {
            "ks": args.ks,
            "seeds": args.seeds,
            "threads": args.threads,
            "teacher_steps": args.teacher_steps,
        },
        "runs": runs,
        "comparison_summary": comparison_summary(runs),
    }
    text = json.dumps(payload, indent=2, default=float)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
