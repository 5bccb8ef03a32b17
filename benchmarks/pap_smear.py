"""Overlapping cells: supervised-only vs ``mean-teacher`` (MMT-PSM), 2 and 5 annotated fields.

    PYTHONPATH=src .venv/bin/python benchmarks/pap_smear.py --json benchmarks/results/pap_smear.json

Per seed: a synthetic Pap smear training stack (``--annotated`` of its fields painted, the
others unannotated) and a separate test stack from other seeds. A teacher is trained on the
painted fields for ``--steps``; from it, with the same further budget ``--student-steps``:

- ``supervised``: the teacher trained on, on the painted fields alone (the fair control: as
  many steps as the student);
- ``mean-teacher``: MMT-PSM at its defaults, learning the unannotated fields too;
- ``no-psm`` / ``no-mask`` (``--ablations``): mean-teacher without sample mining (every pixel
  learnt) / with features copied everywhere.

Scores on the test stack (cells whole, across planes): AJI, object Dice, F1 at IoU 0.5,
missed and spurious cells, for cells and nuclei; training seconds. Every setting is a default;
nothing was tuned on this sample (one CPU thread, as the other benchmarks).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
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


def run_seed(seed: int, n_annotated: int, args) -> dict:
    train = make_pap_smear(args.fields, (args.size, args.size), seed=1000 + seed)
    test = make_pap_smear(args.test_fields, (args.size, args.size), seed=5000 + seed)
    fields = fields_as_input(train.image, rgb=True)
    planes = train.cytoplasm_planes.transpose(1, 0, 2, 3)
    annotated = list(range(n_annotated))
    data = prepare_cell_data(fields, planes, train.nuclei, annotated)
    model_config = measure_geometry(data, CellModelConfig(in_channels=fields.shape[1]))
    teacher_cfg = CellTrainConfig(steps=args.steps, seed=seed)
    student_cfg = CellTrainConfig(steps=args.student_steps, seed=seed)
    teacher = new_cell_model(model_config, seed)
    out: dict = {"seed": seed, "annotated": n_annotated}
    seconds = _train(teacher, SupervisedCellObjective(data, model_config, teacher_cfg), teacher_cfg)
    out["teacher"] = {**_scores(teacher, test), "train_s": seconds}
    unlabeled = [torch.from_numpy(fields[i]) for i in range(n_annotated, args.fields)]
    arms = {"supervised": None, "mean-teacher": MeanTeacherConfig()}
    if args.ablations:
        arms["no-psm"] = MeanTeacherConfig(mining=False)
        arms["no-mask"] = MeanTeacherConfig(mask_guided=False)
    for name, settings in arms.items():
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
        log.info("  cells AJI %.3f, nuclei AJI %.3f", out[name]["cells"]["aji"],
                 out[name]["nuclei"]["aji"])  # fmt: skip
    return out


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
    parser.add_argument("--ablations", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    results = []
    for n_annotated in args.annotated:
        for seed in args.seeds:
            results.append(run_seed(seed, n_annotated, args))
            Path(args.json).write_text(json.dumps({"settings": vars(args), "runs": results},
                                                  indent=1))  # fmt: skip
    for n_annotated in args.annotated:
        runs = [r for r in results if r["annotated"] == n_annotated]
        for arm in [k for k in runs[0] if isinstance(runs[0][k], dict)]:
            aji = [r[arm]["cells"]["aji"] for r in runs]
            naji = [r[arm]["nuclei"]["aji"] for r in runs]
            log.info("%d annotated, %-12s cells AJI %.3f ± %.3f  nuclei AJI %.3f ± %.3f",
                     n_annotated, arm, np.mean(aji), np.std(aji), np.mean(naji),
                     np.std(naji))  # fmt: skip


if __name__ == "__main__":
    main()
