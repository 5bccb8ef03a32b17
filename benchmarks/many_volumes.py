"""Does a student taught on many unannotated fish beat its teacher? Issue 26's benchmark.

    .venv/bin/python benchmarks/many_volumes.py --json benchmarks/results/many_volumes.json

Synthetic Medaka fish (``core.samples.make_medaka``), each seed a different fish (anatomy,
pose, texture and noise). For every number of painted slices ``k`` (``--ks``) and seed
(``--seeds``): one fish with ``k`` painted slices (spread over the organs, as the sample
paints them), ``--unannotated`` fish without labels, and ``--test`` fish that no model sees.
Score: mIoU over the nine organs (points, background left out) on every slice of a test fish,
averaged over the test fish, of:

- ``teacher``: the project run's teacher (the ``k`` painted slices);
- ``teacher_matched_compute``: that teacher trained on the painted slices alone for the steps a
  student gets (strategy ``kd`` with no pseudo-labelled slice and no KD term), so it has the
  student's compute;
- ``naive_self_training``: a student on every pseudo-labelled slice of every image, no quality
  filter, no KD term (``KDConfig(lambda_kd=0)``; the painted slices keep the default share of
  patches, the closest the code offers to "pseudo-labels alone");
- ``filtered_kd``: **the product**: the student of :func:`run_project_pipeline` with its
  defaults (slices the quality classifier accepts, CE + KD);
- ``kd_no_filter``: the same KD student on every pseudo-labelled slice (``tau = 0``);
- ``teacher_3k``: a teacher trained on ``3k`` painted slices of the same fish, for the
  teacher's steps (the "three times less markup" reference).

The project run is the product's (``run_project_pipeline``): its teacher, quality classifier,
per-image pseudo-labels and selection feed the other students, which are built on the same
stack of memory maps (``build_project_stack``) with the same strategy code. Every training has
a fixed step budget (``--steps``; early stopping off). Also recorded: how good the accepted and
all pseudo-labels of the unannotated fish are (mIoU against their truth).

Results are written after every method (``--json``), so an interrupted run keeps them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill_quality import _write, evaluate, summarise, train
from napari_distill.core.config import KDConfig, QualityConfig, TrainConfig
from napari_distill.core.evaluation import mean_iou
from napari_distill.core.io import read_labels
from napari_distill.core.models import ModelBundle
from napari_distill.core.pipeline import PipelineConfig
from napari_distill.core.progress import run_to_completion
from napari_distill.core.project.files import Project, ProjectImage
from napari_distill.core.project.pipeline import run_project_pipeline
from napari_distill.core.project.stack import ProjectStack, build_project_stack
from napari_distill.core.samples import make_medaka
from napari_distill.core.samples.medaka import REFERENCE_SHAPE, MedakaSample
from napari_distill.core.strategies import get_strategy
from napari_distill.core.training import train_teacher

log = logging.getLogger("many_volumes")

METHODS = (
    "teacher",
    "teacher_matched_compute",
    "naive_self_training",
    "filtered_kd",
    "kd_no_filter",
    "teacher_3k",
)
ANNOTATED = "painted"


@dataclasses.dataclass
class Fish:
    """The fish of one seed: the painted one, the unannotated ones and the test ones."""

    painted: MedakaSample
    painted_3k: np.ndarray
    unannotated: list[MedakaSample]
    test: list[MedakaSample]


def make_fish(k: int, seed: int, args: argparse.Namespace) -> Fish:
    """Fish seeds: ``1000 * seed`` (painted), ``+ 1 ...`` (unannotated), ``+ 500 ...`` (test).

    The test fish do not depend on ``--unannotated``; the painted fish is the same at every k.
    """
    shape = tuple(args.shape)
    painted = make_medaka(shape, n_annotated=k, seed=1000 * seed)
    painted_3k = make_medaka(shape, n_annotated=3 * k, seed=1000 * seed).labels_sparse
    unannotated = [
        make_medaka(shape, n_annotated=0, seed=1000 * seed + 1 + i) for i in range(args.unannotated)
    ]
    test = [make_medaka(shape, n_annotated=0, seed=1000 * seed + 500 + i) for i in range(args.test)]
    return Fish(painted, painted_3k, unannotated, test)


def project_of(fish: Fish, painted_labels: np.ndarray) -> Project:
    """The painted fish (first) and the unannotated ones, as arrays."""
    images = [ProjectImage(ANNOTATED, fish.painted.image, painted_labels, fish.painted.scale)]
    images += [
        ProjectImage(f"fish{i + 1}", sample.image, None, sample.scale)
        for i, sample in enumerate(fish.unannotated)
    ]
    return Project(tuple(images))


def stack_of(project: Project, work: Path, pad: int) -> ProjectStack:
    """The project's stack of memory maps, as ``run_project_pipeline`` builds it."""
    volumes = ((i.name, i.image, i.labels, False) for i in project.images)
    return build_project_stack(volumes, [i.image.shape[0] for i in project.images], work, pad)


def on_test(bundle: ModelBundle, fish: Fish) -> dict[str, Any]:
    """mIoU points over the organs on every slice of each test fish, and their mean."""
    scores = [
        evaluate(bundle, t.image, t.labels_full, list(range(t.image.shape[0]))) for t in fish.test
    ]
    return {"mean": float(np.mean(scores)), "per_fish": scores}


def pseudo_quality(
    stack: ProjectStack, fish: Fish, accepted: dict[str, list[int]], class_ids: Any
) -> dict[str, float]:
    """mIoU points of the unannotated fish's pseudo-labels: accepted slices, and all slices."""
    out: dict[str, float] = {}
    for key, pick in (("accepted", True), ("all", False)):
        values = []
        for i, sample in enumerate(fish.unannotated):
            name = f"fish{i + 1}"
            slices = accepted.get(name, []) if pick else list(range(sample.image.shape[0]))
            if slices:
                pseudo = np.asarray(
                    stack.pseudo_labels[stack.span(name).start : stack.span(name).stop]
                )
                values.append(
                    100.0 * mean_iou(pseudo, sample.labels_full, class_ids=class_ids, slices=slices)
                )
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def one_run(k: int, seed: int, args: argparse.Namespace, record) -> None:
    """Every method for one (k, seed); ``record(name, value)`` stores each as it comes."""
    clock = time.perf_counter()
    fish = make_fish(k, seed, args)
    record("painted_slices", fish.painted.annotated.tolist())
    record(
        "painted_slices_3k",
        np.flatnonzero(fish.painted_3k.reshape(len(fish.painted_3k), -1).any(1)).tolist(),
    )
    record("seconds_fish", time.perf_counter() - clock)
    fixed = TrainConfig(steps=args.steps, patience=10**6, seed=seed)
    config = PipelineConfig(
        teacher=fixed, student=fixed,
        quality=QualityConfig(steps=args.quality_steps, seed=seed), propagation=None,
    )  # fmt: skip
    project = project_of(fish, fish.painted.labels_sparse)
    with tempfile.TemporaryDirectory(prefix="many_volumes-") as folder:
        work = Path(folder)
        clock = time.perf_counter()
        result = run_to_completion(
            run_project_pipeline(project, work / "run", config=config, device="cpu")
        )
        record("seconds_project_run", time.perf_counter() - clock)
        record("stage_seconds", result.summary.stage_seconds)
        teacher = result.teacher
        record("teacher", on_test(teacher, fish))
        record("filtered_kd", on_test(result.student, fish))

        # The same stack, its pseudo-labels the teacher's labels the run wrote per image.
        stack = stack_of(project, work / "stack", config.model.context_slices)
        for span in stack.spans:
            path = result.image_files[span.name]["teacher_labels"]
            stack.pseudo_labels[span.start : span.stop] = read_labels(path).data
        selection = result.selection
        accepted = selection.accepted()
        record("n_accepted", {name: len(v) for name, v in accepted.items()})
        record("pseudo_miou", pseudo_quality(stack, fish, accepted, teacher.class_ids))
        selection.set_tau(0.0)
        every = sorted(
            stack.to_global(name, i)
            for name, slices in selection.accepted().items()
            for i in slices
        )
        record("n_pseudo_slices_all", len(every))

        students = {
            "teacher_matched_compute": ([], KDConfig(lambda_kd=0.0)),
            "naive_self_training": (every, KDConfig(lambda_kd=0.0)),
            "kd_no_filter": (every, KDConfig()),
        }
        for name, (slices, strategy_config) in students.items():
            clock = time.perf_counter()
            run = get_strategy("kd").build(
                teacher, stack.image, stack.labels, slices, train_config=fixed,
                strategy_config=strategy_config, device="cpu", pseudo_labels=stack.pseudo_labels,
            )  # fmt: skip
            record(name, on_test(train(run), fish))
            record(f"seconds_{name}", time.perf_counter() - clock)

        clock = time.perf_counter()
        stack_3k = stack_of(
            project_of(fish, fish.painted_3k), work / "stack3k", config.model.context_slices
        )
        run = train_teacher(stack_3k.image, stack_3k.labels, train_config=fixed, device="cpu")
        record("teacher_3k", on_test(train(run), fish))
        record("seconds_teacher_3k", time.perf_counter() - clock)
        del stack, stack_3k


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per k: every method's mean and population spread over the seeds run."""
    out: dict[str, Any] = {}
    for k in sorted({r["k"] for r in runs}):
        done = [r for r in runs if r["k"] == k]
        out[str(k)] = {
            m: {
                **summarise([r[m]["mean"] for r in done if m in r]),
                "seeds": [r["seed"] for r in done if m in r],
            }
            for m in METHODS
        }
    return out


def merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of different seeds or k, joined: one settings block, every run, a new summary."""
    settings = dict(results[0]["settings"])
    for result in results[1:]:
        mismatched = {
            key
            for key, value in result["settings"].items()
            if key not in ("ks", "seeds", "machine") and value != settings.get(key)
        }
        if mismatched:
            raise ValueError(f"these runs differ in {sorted(mismatched)}: not comparable")
    runs = [run for result in results for run in result["runs"]]
    settings["ks"] = sorted({run["k"] for run in runs})
    settings["seeds"] = sorted({run["seed"] for run in runs})
    return {
        "settings": settings,
        "runs": runs,
        "summary": summary(runs),
        "total_seconds": sum(result.get("total_seconds", 0.0) for result in results),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here (else print them)")
    parser.add_argument("--ks", type=int, nargs="+", default=[3, 6], help="painted slices")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--unannotated", type=int, default=8, help="unannotated fish")
    parser.add_argument("--test", type=int, default=4, help="test fish no model sees")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=list(REFERENCE_SHAPE), help="each fish's Z Y X"
    )
    parser.add_argument("--steps", type=int, default=600, help="steps of every training")
    parser.add_argument("--quality-steps", type=int, default=QualityConfig.steps)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--order", choices=("k", "seed"), default="seed",
        help="seed: every k of a seed before the next seed (a stopped run has whole seeds)",
    )  # fmt: skip
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
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "settings": {
            "ks": args.ks,
            "seeds": args.seeds,
            "unannotated": args.unannotated,
            "test": args.test,
            "shape": args.shape,
            "steps": args.steps,
            "quality_steps": args.quality_steps,
            "tau": QualityConfig.tau,
            "kd": dataclasses.asdict(KDConfig()),
            "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
            "torch": torch.__version__,
        },
        "runs": [],
    }
    pairs = [(k, s) for s in args.seeds for k in args.ks]
    if args.order == "k":
        pairs = [(k, s) for k in args.ks for s in args.seeds]
    for k, seed in pairs:
        entry: dict[str, Any] = {"k": k, "seed": seed}
        out["runs"].append(entry)

        def record(name: str, value: Any, entry: dict[str, Any] = entry) -> None:
            entry[name] = value
            if name in METHODS:
                log.info(
                    "k=%d seed=%d %s: %.2f mIoU", entry["k"], entry["seed"], name, value["mean"]
                )
            out["summary"] = summary(out["runs"])
            out["total_seconds"] = time.perf_counter() - started
            if args.json:  # partial results survive an interrupted run
                _write(args.json, out)

        one_run(k, seed, args, record)
    if not args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
