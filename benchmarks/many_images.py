"""What issue 26's two benchmarks share: a project of many images and its six methods.

``many_volumes.py`` (Medaka fish) and ``many_fields.py`` (stacks of Pap smear fields) make the
images of one ``(k, seed)`` as :class:`Specimens`; :func:`one_run` runs the product's project
pipeline on them, trains the other methods on the same stack of memory maps and scores every
method on the test images; :func:`run_benchmark` loops over ``k`` and seeds and writes the
results after every method, so an interrupted run keeps them.

The methods (score: mIoU points over the foreground classes, background left out, on every
slice of a test image, averaged over the test images):

- ``teacher``: the project run's teacher (the ``k`` painted slices);
- ``teacher_matched_compute``: that teacher trained on the painted slices alone for the steps a
  student gets (strategy ``kd`` with no pseudo-labelled slice and no KD term);
- ``naive_self_training``: a student on every pseudo-labelled slice of every image, no quality
  filter, no KD term (``KDConfig(lambda_kd=0)``; the painted slices keep the default share of
  patches, the closest the code offers to "pseudo-labels alone");
- ``filtered_kd``: **the product**: the student of :func:`run_project_pipeline` with its
  defaults (slices the quality classifier accepts, CE + KD);
- ``kd_no_filter``: the same KD student on every pseudo-labelled slice (``tau = 0``);
- ``teacher_3k``: a teacher trained on ``3k`` painted slices of the same painted image, for the
  teacher's steps (the "three times less markup" reference).

``--students NAME ...`` adds the product's student with one setting changed (issue 26's list:
:data:`STUDENT_VARIANTS`), each on the same stack, teacher and pseudo-labels; ``--baselines
teacher_matched_compute`` keeps only that control of the other methods.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill_quality import _write, summarise, train
from napari_distill.core.config import KDConfig, QualityConfig, TrainConfig
from napari_distill.core.evaluation import mean_iou
from napari_distill.core.inference import predict_bundle
from napari_distill.core.io import read_labels
from napari_distill.core.models import ModelBundle
from napari_distill.core.pipeline import PipelineConfig
from napari_distill.core.progress import run_to_completion
from napari_distill.core.project.files import Project, ProjectImage
from napari_distill.core.project.pipeline import run_project_pipeline
from napari_distill.core.project.stack import ProjectStack, build_project_stack
from napari_distill.core.strategies import get_strategy
from napari_distill.core.training import train_teacher

log = logging.getLogger("many_images")

METHODS = (
    "teacher",
    "teacher_matched_compute",
    "naive_self_training",
    "filtered_kd",
    "kd_no_filter",
    "teacher_3k",
)
ANNOTATED = "painted"
BASELINES = ("teacher_matched_compute", "naive_self_training", "kd_no_filter", "teacher_3k")

# The product's student with one of issue 26's settings changed: (tau or None for the run's,
# the strategy's settings). Each trains on the slices accepted at that tau.
STUDENT_VARIANTS: dict[str, tuple[float | None, KDConfig]] = {
    "from_scratch": (None, KDConfig(init_from_teacher=False)),
    "noisy_student": (None, KDConfig(noisy_student=True)),
    "larger_student": (None, KDConfig(larger_student=True, init_from_teacher=False)),
    "larger_noisy_student": (
        None, KDConfig(larger_student=True, noisy_student=True, init_from_teacher=False),
    ),
    "hard_labels": (None, KDConfig(lambda_kd=0.0)),
    "tau_0.5": (0.5, KDConfig()),
    "tau_0.9": (0.9, KDConfig()),
    "annotated_share_0.25": (None, KDConfig(annotated_share=0.25)),
    "annotated_share_0.75": (None, KDConfig(annotated_share=0.75)),
}  # fmt: skip


@dataclasses.dataclass
class Specimen:
    """An image (a volume or a stack of fields) and its full ground truth."""

    image: np.ndarray
    truth: np.ndarray


@dataclasses.dataclass
class Specimens:
    """The images of one ``(k, seed)``: the painted one, the unannotated ones, the test ones.

    ``painted_labels`` has ``k`` painted slices, ``painted_labels_3k`` has ``3k`` of the same
    image; ``prefix`` names the unannotated images (``prefix1``, ``prefix2`` ...).
    """

    painted: np.ndarray
    painted_labels: np.ndarray
    painted_labels_3k: np.ndarray
    scale: tuple[float, ...]
    unannotated: list[Specimen]
    test: list[Specimen]
    rgb: bool = False
    prefix: str = "image"

    def name(self, i: int) -> str:
        return f"{self.prefix}{i + 1}"


def painted_slices(labels: np.ndarray) -> list[int]:
    """Indices of the slices with any label."""
    return np.flatnonzero(labels.reshape(len(labels), -1).any(1)).tolist()


def project_of(specimens: Specimens, painted_labels: np.ndarray) -> Project:
    """The painted image (first) and the unannotated ones, as arrays."""
    rgb = specimens.rgb
    images = [ProjectImage(ANNOTATED, specimens.painted, painted_labels, specimens.scale, rgb=rgb)]
    images += [
        ProjectImage(specimens.name(i), s.image, None, specimens.scale, rgb=rgb)
        for i, s in enumerate(specimens.unannotated)
    ]
    return Project(tuple(images))


def stack_of(project: Project, work: Path, pad: int) -> ProjectStack:
    """The project's stack of memory maps, as ``run_project_pipeline`` builds it."""
    volumes = ((i.name, i.image, i.labels, bool(i.rgb)) for i in project.images)
    return build_project_stack(volumes, [i.image.shape[0] for i in project.images], work, pad)


def score(bundle: ModelBundle, specimen: Specimen, rgb: bool) -> float:
    """mIoU points over the foreground classes on every slice of ``specimen``."""
    slices = list(range(specimen.image.shape[0]))
    prediction = run_to_completion(
        predict_bundle(
            bundle, specimen.image, device="cpu", slices=slices, keep_probabilities=False, rgb=rgb
        )
    )
    return 100.0 * mean_iou(
        prediction.labels, specimen.truth, class_ids=bundle.class_ids, ignore_background=True,
        slices=slices,
    )  # fmt: skip


def on_test(bundle: ModelBundle, specimens: Specimens) -> dict[str, Any]:
    """Every test image's score, and their mean."""
    scores = [score(bundle, t, specimens.rgb) for t in specimens.test]
    return {"mean": float(np.mean(scores)), "per_image": scores}


def pseudo_quality(
    stack: ProjectStack, specimens: Specimens, accepted: dict[str, list[int]], class_ids: Any
) -> dict[str, float]:
    """mIoU points of the unannotated images' pseudo-labels: accepted slices, and all slices."""
    out: dict[str, float] = {}
    for key, pick in (("accepted", True), ("all", False)):
        values = []
        for i, specimen in enumerate(specimens.unannotated):
            name = specimens.name(i)
            slices = accepted.get(name, []) if pick else list(range(specimen.image.shape[0]))
            if slices:
                span = stack.span(name)
                pseudo = np.asarray(stack.pseudo_labels[span.start : span.stop])
                values.append(
                    100.0 * mean_iou(pseudo, specimen.truth, class_ids=class_ids, slices=slices)
                )
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


Maker = Callable[[int, int, argparse.Namespace], Specimens]


def one_run(k: int, seed: int, make: Maker, args: argparse.Namespace, record) -> None:
    """Every method for one (k, seed); ``record(name, value)`` stores each as it comes."""
    clock = time.perf_counter()
    specimens = make(k, seed, args)
    record("painted_slices", painted_slices(specimens.painted_labels))
    record("painted_slices_3k", painted_slices(specimens.painted_labels_3k))
    record("seconds_data", time.perf_counter() - clock)
    fixed = TrainConfig(steps=args.steps, patience=10**6, seed=seed)
    config = PipelineConfig(
        teacher=fixed, student=fixed,
        quality=QualityConfig(steps=args.quality_steps, seed=seed), propagation=None,
    )  # fmt: skip
    project = project_of(specimens, specimens.painted_labels)
    rgb = specimens.rgb
    with tempfile.TemporaryDirectory(prefix="many_images-") as folder:
        work = Path(folder)
        clock = time.perf_counter()
        result = run_to_completion(
            run_project_pipeline(project, work / "run", config=config, device="cpu")
        )
        record("seconds_project_run", time.perf_counter() - clock)
        record("stage_seconds", result.summary.stage_seconds)
        teacher = result.teacher
        record("teacher", on_test(teacher, specimens))
        record("filtered_kd", on_test(result.student, specimens))

        # The same stack, its pseudo-labels the teacher's labels the run wrote per image.
        stack = stack_of(project, work / "stack", config.model.context_slices)
        for span in stack.spans:
            path = result.image_files[span.name]["teacher_labels"]
            stack.pseudo_labels[span.start : span.stop] = read_labels(path).data
        selection = result.selection
        accepted = selection.accepted()
        record("n_accepted", {name: len(v) for name, v in accepted.items()})
        record("pseudo_miou", pseudo_quality(stack, specimens, accepted, teacher.class_ids))
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
        students = {n: v for n, v in students.items() if n in args.baselines}
        for name in args.students:
            tau, strategy_config = STUDENT_VARIANTS[name]
            selection.set_tau(config.quality.tau if tau is None else tau)
            chosen = selection.accepted().items()
            slices = sorted(stack.to_global(image, i) for image, ids in chosen for i in ids)
            students[name] = (slices, strategy_config)
            record(f"n_accepted_{name}", len(slices))
        for name, (slices, strategy_config) in students.items():
            clock = time.perf_counter()
            run = get_strategy("kd").build(
                teacher, stack.image, stack.labels, slices, train_config=fixed,
                strategy_config=strategy_config, device="cpu", pseudo_labels=stack.pseudo_labels,
                rgb=rgb,
            )  # fmt: skip
            record(name, on_test(train(run), specimens))
            record(f"seconds_{name}", time.perf_counter() - clock)

        if "teacher_3k" not in args.baselines:
            return
        clock = time.perf_counter()
        stack_3k = stack_of(
            project_of(specimens, specimens.painted_labels_3k), work / "stack3k",
            config.model.context_slices,
        )  # fmt: skip
        run = train_teacher(
            stack_3k.image, stack_3k.labels, train_config=fixed, device="cpu", rgb=rgb
        )
        record("teacher_3k", on_test(train(run), specimens))
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
            for m in (*METHODS, *(v for v in STUDENT_VARIANTS if any(v in r for r in done)))
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


def add_arguments(parser: argparse.ArgumentParser, ks: list[int], unannotated: int, test: int):
    """The options both benchmarks share (their own data options come on top)."""
    parser.add_argument("--json", help="write the results here (else print them)")
    parser.add_argument("--ks", type=int, nargs="+", default=ks, help="painted slices")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--unannotated", type=int, default=unannotated, help="unannotated images")
    parser.add_argument("--test", type=int, default=test, help="test images no model sees")
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
    parser.add_argument(
        "--students", nargs="*", default=[], choices=sorted(STUDENT_VARIANTS),
        help="also the product's student with one setting changed (issue 26's list)",
    )  # fmt: skip
    parser.add_argument(
        "--baselines", nargs="*", default=list(BASELINES), choices=BASELINES,
        help="which of the other methods to run (default: all)",
    )  # fmt: skip


def run_benchmark(
    args: argparse.Namespace, parser: argparse.ArgumentParser, make: Maker, data: dict[str, Any]
) -> int:
    """Merge (``--merge``) or run every ``(k, seed)``; ``data`` joins the settings recorded."""
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
            **data,
            "steps": args.steps,
            "quality_steps": args.quality_steps,
            "students": args.students,
            "baselines": args.baselines,
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
            if name in METHODS or name in STUDENT_VARIANTS:
                log.info(
                    "k=%d seed=%d %s: %.2f mIoU", entry["k"], entry["seed"], name, value["mean"]
                )
            out["summary"] = summary(out["runs"])
            out["total_seconds"] = time.perf_counter() - started
            if args.json:  # partial results survive an interrupted run
                _write(args.json, out)

        one_run(k, seed, make, args, record)
    if not args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    return 0
