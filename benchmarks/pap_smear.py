"""Overlapping cells: supervised-only vs ``mean-teacher`` (MMT-PSM), 2 and 5 annotated fields.

    PYTHONPATH=src .venv/bin/python benchmarks/pap_smear.py --json benchmarks/results/pap_smear.json
    ... --seeds 1 --arms no-psm no-mask --teacher-dir T --json abl.json   # more arms later
    ... --merge a.json b.json --json benchmarks/results/pap_smear.json     # join, no run

Per seed: a synthetic Pap smear training stack (``--annotated`` of its fields painted, the
others unannotated) and a separate test stack from other seeds. A teacher is trained on the
painted fields for ``--steps``; from it, with the same further budget ``--student-steps``:

- ``supervised``: the teacher trained on, on the painted fields alone (the fair control: as
  many steps as the student);
- ``mean-teacher``: MMT-PSM at its defaults, learning the unannotated fields too;
- ``no-psm`` / ``no-mask`` (``--ablations``): mean-teacher without sample mining (every pixel
  learnt) / with features copied everywhere;
- ``kd``: the product's semantic pipeline before the cell model, its labels made cells
  without overlaps (``pap_kd.py``); it needs no cell teacher (one kept is loaded, to join).

Every arm of a seed and budget starts from the same teacher, reseeded alike, so arms run in
another process (``--arms``) compare fairly: ``--teacher-dir`` keeps each teacher's weights and
reuses them, and ``--merge`` refuses to join two runs of one seed whose teachers score apart.

Scores on the test stack (cells whole, across planes): AJI, object Dice, F1 at IoU 0.5,
missed and spurious cells, for cells and nuclei; training seconds. Every setting is a default;
nothing was tuned on this sample (one CPU thread, as the other benchmarks).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from napari_distill.core.evaluation.cells import score_cells, score_nuclei
from napari_distill.core.inference.cells import fields_as_input, predict_cells
from napari_distill.core.models.cells import CellModelConfig
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_pap_smear
from napari_distill.core.strategies.cell_configs import MeanTeacherConfig
from napari_distill.core.strategies.mean_teacher import MeanTeacherObjective
from napari_distill.core.training.cells import (
    CellTrainConfig,
    CellTrainingRun,
    SupervisedCellObjective,
    new_cell_model,
)
from napari_distill.core.training.cells_data import measure_geometry, prepare_cell_data
from pap_kd import kd_arm

log = logging.getLogger("pap_smear")


def _scores(model, test) -> dict:
    cells, nuclei = run_to_completion(predict_cells(model, test.image, rgb=True))
    truth = test.cytoplasm_planes.transpose(1, 0, 2, 3)
    return {
        "cells": score_cells(cells, truth).as_dict(),
        "nuclei": score_nuclei(nuclei, test.nuclei).as_dict(),
    }


def _train(model, objective, config) -> float:
    started = time.perf_counter()
    run = CellTrainingRun(model, objective, config)
    for record in run.steps():
        if record.step % 50 == 0:
            log.info("  step %d loss %.3f %s", record.step, record.loss, record.phase)
    return time.perf_counter() - started


CELL_ARMS = {
    "supervised": None,
    "mean-teacher": MeanTeacherConfig(),
    "no-psm": MeanTeacherConfig(mining=False),
    "no-mask": MeanTeacherConfig(mask_guided=False),
}
ARMS = (*CELL_ARMS, "kd")
# Settings that must agree for runs to be joined (the others say which runs were made).
COMPARABLE = ("fields", "test_fields", "size", "steps", "student_steps")


def _teacher(seed: int, n_annotated: int, model_config, data, test, args, train: bool = True):
    """Train the teacher, or load the one ``--teacher-dir`` kept for these settings; with
    ``train`` False, (None, None) when none is kept."""
    teacher = new_cell_model(model_config, seed)
    key = "_".join(f"{k}{getattr(args, k)}" for k in COMPARABLE)
    path = Path(args.teacher_dir or ".") / f"teacher_s{seed}_a{n_annotated}_{key}.pt"
    if args.teacher_dir and path.exists():
        saved = torch.load(path, weights_only=False)
        teacher.load_state_dict(saved["state"])
        log.info("seed %d, %d annotated: teacher loaded from %s", seed, n_annotated, path)
        return teacher, saved["record"]
    if not train:
        return None, None
    teacher_cfg = CellTrainConfig(steps=args.steps, seed=seed)
    seconds = _train(teacher, SupervisedCellObjective(data, model_config, teacher_cfg), teacher_cfg)
    record = {**_scores(teacher, test), "train_s": seconds}
    if args.teacher_dir:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"state": teacher.state_dict(), "record": record}, path)
    return teacher, record


def run_seed(seed: int, n_annotated: int, args) -> dict:
    train = make_pap_smear(args.fields, (args.size, args.size), seed=1000 + seed)
    test = make_pap_smear(args.test_fields, (args.size, args.size), seed=5000 + seed)
    fields = fields_as_input(train.image, rgb=True)
    planes = train.cytoplasm_planes.transpose(1, 0, 2, 3)
    annotated = list(range(n_annotated))
    data = prepare_cell_data(fields, planes, train.nuclei, annotated)
    model_config = measure_geometry(data, CellModelConfig(in_channels=fields.shape[1]))
    student_cfg = CellTrainConfig(steps=args.student_steps, seed=seed)
    out: dict = {"seed": seed, "annotated": n_annotated, "load_start": os.getloadavg()}
    cell_arms = [name for name in args.arms if name in CELL_ARMS]
    teacher, record = _teacher(seed, n_annotated, model_config, data, test, args, bool(cell_arms))
    if record is not None:
        out["teacher"] = record
    unlabeled = [torch.from_numpy(fields[i]) for i in range(n_annotated, args.fields)]
    for name in cell_arms:
        settings = CELL_ARMS[name]
        torch.manual_seed(seed)
        student = copy.deepcopy(teacher)
        supervised = SupervisedCellObjective(data, model_config, student_cfg)
        objective = (
            supervised
            if settings is None
            else MeanTeacherObjective(supervised, student, unlabeled, settings)
        )
        log.info("seed %d, %d annotated: %s", seed, n_annotated, name)
        seconds = _train(student, objective, student_cfg)
        out[name] = {**_scores(student, test), "train_s": seconds + out["teacher"]["train_s"]}
        out[name]["load_after"] = os.getloadavg()
        log.info("  cells AJI %.3f, nuclei AJI %.3f", out[name]["cells"]["aji"],
                 out[name]["nuclei"]["aji"])  # fmt: skip
    if "kd" in args.arms:
        log.info("seed %d, %d annotated: kd (semantic pipeline)", seed, n_annotated)
        out["kd"] = {**kd_arm(train, test, n_annotated, seed, args), "load_after": os.getloadavg()}
        log.info("  cells AJI %.3f, nuclei AJI %.3f", out["kd"]["cells"]["aji"],
                 out["kd"]["nuclei"]["aji"])  # fmt: skip
    out["load_end"] = os.getloadavg()
    return out


def _same_teacher(a: dict, b: dict) -> bool:
    return all(a[part] == b[part] for part in ("cells", "nuclei"))


def merge(results: list[dict]) -> dict:
    """Runs of other seeds or arms joined: a seed's arms from several files go into one run,
    provided their teachers scored exactly alike (the same teacher; training repeats). A run
    without a cell teacher (``kd`` alone) joins any."""
    settings = {k: v for k, v in results[0]["settings"].items() if k in COMPARABLE}
    for result in results[1:]:
        mismatched = [k for k in COMPARABLE if result["settings"][k] != settings[k]]
        if mismatched:
            raise ValueError(f"these runs differ in {mismatched}: not comparable")
    joined: dict[tuple[int, int], dict] = {}
    for result in results:
        for run in result["runs"]:
            key = (run["seed"], run["annotated"])
            commit = run.get("commit", result.get("commit"))
            run = {k: dict(v, commit=v.get("commit", commit)) if k in ARMS else v
                   for k, v in run.items()}  # fmt: skip
            if key not in joined:
                joined[key] = dict(run, commit=commit)
                continue
            teachers = [r["teacher"] for r in (joined[key], run) if "teacher" in r]
            if len(teachers) == 2 and not _same_teacher(*teachers):
                raise ValueError(f"seed {key[0]}, {key[1]} annotated: the teachers differ")
            if teachers:  # a kd-only run may have none
                joined[key]["teacher"] = teachers[0]
            joined[key].update({k: v for k, v in run.items() if k in ARMS})
    runs = sorted(joined.values(), key=lambda r: (r["annotated"], r["seed"]))
    settings["seeds"] = sorted({r["seed"] for r in runs})
    settings["annotated"] = sorted({r["annotated"] for r in runs})
    settings["arms"] = sorted({k for r in runs for k, v in r.items() if k in ARMS})
    return {"settings": settings, "runs": runs, "summary": summary(runs)}


def _mean_sd(values: list[float]) -> dict:
    """Mean and sample standard deviation (ddof 1: three seeds are a small sample)."""
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "sd": sd, "n": len(values), "values": values}


def summary(runs: list[dict]) -> dict:
    """Per budget and arm: every score's mean and spread over seeds, and each arm's per-seed
    difference from ``supervised`` on the seeds that have both."""
    out: dict = {}
    runs = [_with_kd_teacher(r) for r in runs]
    for n_annotated in sorted({r["annotated"] for r in runs}):
        mine = [r for r in runs if r["annotated"] == n_annotated]
        arms = [a for a in ("teacher", *ARMS, "kd-teacher") if any(a in r for r in mine)]
        out[str(n_annotated)] = by_arm = {}
        for arm in arms:
            have = [r for r in mine if arm in r]
            by_arm[arm] = {"seeds": [r["seed"] for r in have]}
            by_arm[arm]["train_s"] = _mean_sd([r[arm]["train_s"] for r in have])
            for part in ("cells", "nuclei"):
                for metric in ("aji", "dice", "f1", "missed", "spurious"):
                    values = [r[arm][part][metric] for r in have]
                    by_arm[arm][f"{part}_{metric}"] = _mean_sd(values)
            paired = [r for r in have if "supervised" in r]
            if arm != "supervised" and paired:
                for part in ("cells", "nuclei"):
                    diffs = [r[arm][part]["aji"] - r["supervised"][part]["aji"] for r in paired]
                    by_arm[arm][f"{part}_aji_minus_supervised"] = _mean_sd(diffs)
    return out


def _with_kd_teacher(run: dict) -> dict:
    """The kd pipeline's semantic teacher as an arm of its own, timed by its training stage."""
    if "kd" not in run:
        return run
    kd = run["kd"]
    return {**run, "kd-teacher": {**kd["teacher"], "train_s": kd["stage_s"]["teacher"]}}


def _commit() -> str:
    here = Path(__file__).parent
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=here, capture_output=True)
    return done.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--annotated", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--fields", type=int, default=10, help="training fields in all")
    parser.add_argument("--test-fields", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="field side (pixels)")
    parser.add_argument("--steps", type=int, default=300, help="teacher steps")
    parser.add_argument("--student-steps", type=int, default=150)
    parser.add_argument(
        "--arms", nargs="+", choices=list(ARMS), default=["supervised", "mean-teacher"],
        help="arms trained from each teacher",
    )  # fmt: skip
    parser.add_argument("--ablations", action="store_true", help="add no-psm and no-mask")
    parser.add_argument("--teacher-dir", help="keep each teacher here and reuse it")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="join these into --json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.merge:
        merged = merge([json.loads(Path(p).read_text()) for p in args.merge])
        Path(args.json).write_text(json.dumps(merged, indent=1))
        _log_summary(merged["summary"])
        return
    if args.ablations:
        args.arms = list(dict.fromkeys([*args.arms, "no-psm", "no-mask"]))
    torch.set_num_threads(1)
    commit, results = _commit(), []
    for n_annotated in args.annotated:
        for seed in args.seeds:
            results.append({**run_seed(seed, n_annotated, args), "commit": commit})
            out = {"settings": vars(args), "commit": commit, "runs": results}
            Path(args.json).write_text(json.dumps({**out, "summary": summary(results)}, indent=1))
    _log_summary(summary(results))


def _log_summary(by_budget: dict) -> None:
    for n_annotated, arms in by_budget.items():
        for arm, s in arms.items():
            cells, nuclei = s["cells_aji"], s["nuclei_aji"]
            log.info("%s annotated, %-12s cells AJI %.3f ± %s  nuclei AJI %.3f ± %s  (seeds %s)",
                     n_annotated, arm, cells["mean"], _sd(cells), nuclei["mean"], _sd(nuclei),
                     s["seeds"])  # fmt: skip


def _sd(stat: dict) -> str:
    return "-" if stat["sd"] is None else f"{stat['sd']:.3f}"


if __name__ == "__main__":
    main()
