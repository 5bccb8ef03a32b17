"""The teacher against label propagation over slice spacings and in-plane resolutions
(issue 25's benchmark): does the per-class combination beat both, and does the leave-out
comparison tell which is better?

    PYTHONPATH=src .venv/bin/python benchmarks/teacher_vs_propagation.py \\
        --spacings 1,4 --resolutions 1 --ks 3,6 --seeds 0,1 --teacher-steps 200 \\
        --threads 1 --json benchmarks/results/teacher_vs_propagation.json

The data: the synthetic Medaka micro-CT ``make_medaka(shape, seed)``, drawn at in-plane
resolution ``r`` (``--resolutions``: the two in-plane sizes times r, as "Resolution" drew the
fish at 2x), re-sliced along its long axis (``--axis``, default 1: transverse sections, as a
CT of a body is sliced) keeping every s-th slice (``--spacings``: s = 1 gives 256 slices
40 um apart whose neighbours are nearly identical; larger s, slices s x 40 um apart), with
k painted slices (``--ks``) spread over the slices that show organs
(:func:`~napari_distill.core.samples.reslice_medaka`). The seed (``--seeds``) changes the
fish and the training.

The methods (``--methods``), what the product does with each:

- ``nearest``, ``flow``: :func:`~napari_distill.core.inference.propagate` (the CLI's
  ``propagate``), nearest painted slice and TV-L1 optical flow, each with its own
  leave-one-painted-slice-out estimate (``loo_miou``);
- ``teacher-default``: :func:`~napari_distill.core.training.train_teacher` with today's fixed
  defaults (``train-teacher --no-plan``): one network, one painted slice held out;
- ``teacher-plan``: the same with ``plan=plan_for_data(...)`` (the default of
  ``train-teacher`` and ``run``), given the sample's voxel size so that thick slices reach the
  plan's fingerprint;
- ``combined``: :func:`~napari_distill.core.stages.propagation_stage` on the planned teacher
  (what ``run`` uses as pseudo-labels): the teacher against flow propagation on the painted
  slices its networks held out, then per class the better source or the mean. Its comparison
  gives the leave-out estimate of both sources beside their true scores.

Both teachers train ``--teacher-steps`` steps (a reduced budget: the automatic one is
2,000-4,000 on a CPU) and are predicted on every slice. ``teacher-default`` is also compared
with the flow on the slice it held out (``comparison`` of its row). Score: mIoU over the
nine organs (background left out) on the unpainted slices against the full truth
(``propagation.organ_scores``).

Settings run seed by seed (the first seed across the whole grid first), and the JSON
(``--json``) is written after each, with the summary
(:func:`teacher_vs_propagation_summary.grid_summary`): per setting each method's mean and
spread over the seeds, the estimates beside the truth (under each estimate rule), and issue
25's targets. ``--resume`` keeps the runs already in ``--json`` and skips their settings (each
run records the commit it ran with; runs written before that take the file's);
``--summarise FILE`` only recomputes the summary of a results file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_distill.core.config import PredictConfig, PropagationConfig, TrainConfig
from napari_distill.core.device import set_cpu_threads
from napari_distill.core.evaluation import Comparison
from napari_distill.core.inference import NeighbourFlows, compare_with_propagation, predict_bundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import REFERENCE_SHAPE, make_medaka, reslice_medaka
from napari_distill.core.stages import propagation_stage
from napari_distill.core.training import plan_for_data, stored_splits, train_teacher
from propagation import Case, Outcome, _commit, organ_scores, propagation_method
from teacher_vs_propagation_summary import METHODS, grid_summary, summary_lines

log = logging.getLogger("teacher_vs_propagation")

FLOW = PropagationConfig(method="flow", flow="tvl1")
NEAREST = PropagationConfig(method="nearest")


def make_case(seed: int, resolution: int, every: int, k: int, axis: int) -> Case:
    """The fish of ``seed`` at in-plane ``resolution``, sliced along ``axis`` every ``every``."""
    shape = tuple(n if a == axis else n * resolution for a, n in enumerate(REFERENCE_SHAPE))
    fish = make_medaka(shape=shape, n_annotated=0, seed=seed)
    return Case(reslice_medaka(fish, axis=axis, every=every, n_annotated=k), k, seed)


def _timed(generator: Any) -> tuple[Any, float, float]:
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_to_completion(generator)
    return result, time.perf_counter() - started, time.process_time() - cpu_started


def _comparison_facts(comparison: Comparison) -> dict[str, Any]:
    return {
        "fair": comparison.fair,
        "held_out": [list(s) for s in comparison.held_out],
        "loo_teacher": comparison.teacher_miou,
        "loo_flow": comparison.propagation_miou,
        "loo_combined": comparison.combined_miou,
        "classes": comparison.rows(),
        "scored_class_ids": list(comparison.scored_class_ids),
        "held_out_scores": [dict(s) for s in comparison.held_out_scores],
        "summary": comparison.summary(),
    }


def teacher(case: Case, steps: int, planned: bool, work: Path, flows: NeighbourFlows) -> dict:
    """Train and predict a teacher (planned or today's defaults); its prediction, its
    comparison with flow propagation (for ``teacher-plan``: the product's propagation stage,
    whose pseudo-labels are the combination)."""
    sample = case.sample
    image, painted = sample.image, sample.labels_sparse
    plan = None
    if planned:
        plan = plan_for_data(
            image, painted, spacing=sample.scale, device="cpu", given={"steps": steps},
            class_names=sample.class_names,
        )  # fmt: skip
    started, cpu_started = time.perf_counter(), time.process_time()
    run = train_teacher(
        image, painted, train_config=TrainConfig(steps=steps, seed=case.seed), device="cpu",
        class_names=sample.class_names, plan=plan,
    )  # fmt: skip
    run_to_completion(run.steps())
    bundle = run.best_bundle()
    prediction = run_to_completion(
        predict_bundle(bundle, image, config=PredictConfig(), device="cpu", out_dir=work)
    )
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    facts: dict[str, Any] = {
        "steps": run.step,
        "members": bundle.model_config.members,
        "views": bundle.model_config.views,
        "downsample": bundle.model_config.downsample,
        "splits": [[list(t), list(v)] for t, v in stored_splits(bundle)],
    }
    if plan is not None:
        facts["plan"] = {d.setting: d.value for d in plan.decisions}
        facts["plan_reasons"] = {d.setting: d.reason for d in plan.decisions}
    out = {"teacher": Outcome(np.array(prediction.labels), seconds, cpu_seconds, extra=facts)}
    if planned:
        (pseudo, comparison), combine_s, combine_cpu = _timed(
            propagation_stage(
                bundle, image, painted, prediction, FLOW, predict_config=PredictConfig(),
                device=run.device, work_dir=work, flows=flows,
            )
        )  # fmt: skip
        out["combined"] = Outcome(
            np.array(pseudo.labels), seconds + combine_s, cpu_seconds + combine_cpu,
            extra={"stage_seconds": combine_s, "comparison": _comparison_facts(comparison)},
        )  # fmt: skip
    else:
        comparison, _, _ = _timed(
            compare_with_propagation(
                bundle, image, painted, stored_splits(bundle), FLOW, device="cpu", flows=flows
            )
        )
    out["teacher"].extra["comparison"] = _comparison_facts(comparison)
    return out


def run_setting(case: Case, methods: list[str], steps: int) -> dict[str, Outcome]:
    """Every method on one case; the flows between neighbouring slices estimated once."""
    flows = NeighbourFlows(case.sample.image, FLOW)
    outcomes: dict[str, Outcome] = {}
    if "nearest" in methods:
        outcomes["nearest"] = propagation_method(NEAREST)(case)
    if "flow" in methods:
        outcomes["flow"] = propagation_method(FLOW)(case, flows=flows)
    with tempfile.TemporaryDirectory(prefix="tvp-", ignore_cleanup_errors=True) as work:
        # Each teacher predicts into its own folder (the probabilities are memory maps there).
        if "teacher-default" in methods:
            default = teacher(case, steps, False, Path(work) / "default", flows)
            outcomes["teacher-default"] = default["teacher"]
        if "teacher-plan" in methods or "combined" in methods:
            planned = teacher(case, steps, True, Path(work) / "plan", flows)
            outcomes["teacher-plan"] = planned["teacher"]
            if "combined" in methods:
                outcomes["combined"] = planned["combined"]
    return outcomes


def record(case: Case, every: int, resolution: int, name: str, outcome: Outcome) -> dict:
    row: dict[str, Any] = {
        "spacing": every,
        "slice_um": case.sample.scale[0],
        "resolution": resolution,
        "shape": list(case.sample.image.shape),
        "k": case.k,
        "seed": case.seed,
        "method": name,
        "painted": case.painted,
        **organ_scores(case.sample, outcome.labels, case.unpainted),
        "seconds": outcome.seconds,
        "cpu_seconds": outcome.cpu_seconds,
    }
    if outcome.loo is not None:
        row["loo_miou"] = outcome.loo.mean_iou
        row["loo_per_slice"] = {str(i): v for i, v in outcome.loo.per_slice.items()}
    row.update(outcome.extra)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--spacings", default="1,4,8", help="keep every s-th slice, comma separated"
    )
    parser.add_argument("--resolutions", default="1,2", help="in-plane resolutions (x the sample)")
    parser.add_argument("--ks", default="3,6,12", help="painted slices, comma separated")
    parser.add_argument("--seeds", default="0,1,2", help="sample seeds, comma separated")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods, comma separated")
    parser.add_argument("--axis", type=int, default=1, help="the sample's axis to slice along")
    parser.add_argument("--teacher-steps", type=int, default=300, help="each teacher's steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="write the results here after every setting")
    parser.add_argument("--resume", action="store_true", help="keep --json's runs, skip theirs")
    parser.add_argument("--summarise", help="only recompute the summary of this results JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.summarise:
        payload = json.loads(Path(args.summarise).read_text())
        payload["summary"] = grid_summary(payload["runs"])
        Path(args.summarise).write_text(json.dumps(payload, indent=1, default=float) + "\n")
        print("\n".join(summary_lines(payload["summary"])))
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {', '.join(METHODS)}")
    set_cpu_threads(args.threads)
    ints = {name: [int(v) for v in getattr(args, name).split(",")]
            for name in ("seeds", "resolutions", "spacings", "ks")}  # fmt: skip
    out = Path(args.json) if args.json else None
    runs: list[dict[str, Any]] = []
    if args.resume and out is not None and out.exists():
        earlier = json.loads(out.read_text())
        # Each run keeps the commit it ran with: the file's commit is the latest resume's.
        runs = [{"commit": earlier.get("commit", "unknown"), **r} for r in earlier["runs"]]
    done = {(r["seed"], r["resolution"], r["spacing"], r["k"], r["method"]) for r in runs}
    payload: dict[str, Any] = {
        "benchmark": "teacher_vs_propagation",
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "settings": {**vars(args), "summarise": None},
    }
    for seed in ints["seeds"]:
        for resolution in ints["resolutions"]:
            for every in ints["spacings"]:
                for k in ints["ks"]:
                    todo = [m for m in methods if (seed, resolution, every, k, m) not in done]
                    if not todo:
                        continue
                    if "combined" in todo and "teacher-plan" not in todo:
                        todo.append("teacher-plan")  # the combination is of this teacher
                    case = make_case(seed, resolution, every, k, args.axis)
                    started = time.perf_counter()
                    outcomes = run_setting(case, todo, args.teacher_steps)
                    runs = [r for r in runs if (r["seed"], r["resolution"], r["spacing"],
                                                r["k"], r["method"]) not in
                            {(seed, resolution, every, k, m) for m in outcomes}]  # fmt: skip
                    for name, outcome in outcomes.items():
                        row = record(case, every, resolution, name, outcome)
                        runs.append({"commit": payload["commit"], **row})
                    log.info(
                        "seed %d r %d spacing %d k %d (%.0f s): %s", seed, resolution, every,
                        k, time.perf_counter() - started,
                        ", ".join(f"{r['method']} {r['miou']:.3f}" for r in runs[-len(outcomes):]),
                    )  # fmt: skip
                    payload["runs"] = runs
                    payload["summary"] = grid_summary(runs)
                    if out is not None:
                        out.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    payload["runs"] = runs
    payload["summary"] = grid_summary(runs)
    print(json.dumps(payload, indent=1, default=float))
    print("\n".join(summary_lines(payload["summary"])), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
