"""The Pap smear run: painted cells and nuclei in, overlapping cell planes out, one generator.

Stages: the teacher (the cell model trained on the annotated fields only: those with at least
one painted cell), its prediction of every field, then the strategy's student and its
prediction. ``supervised``: the student *is* the teacher (no second model; its files are the
teacher's). ``mean-teacher``: the student starts from the teacher (the teacher's training is
MMT-PSM's supervised warm-up) and learns the unannotated fields from its EMA teacher.

Files in ``out_dir``: ``teacher.pt``, ``teacher_cells.tif`` ``(N, P, H, W)``,
``teacher_nuclei.tif`` ``(N, H, W)``, ``student.pt``, ``cells.tif``, ``nuclei.tif`` and
``report.md`` with the per-field counts.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from .inference.cells import predict_cells
from .io import write_labels
from .io.cells import write_cell_planes
from .models.cells import CellModel, CellModelConfig
from .stages import check_out_dir
from .strategies.cell_configs import MeanTeacherConfig
from .strategies.cell_runs import (
    CELL_STRATEGIES,
    mean_teacher_run,
    prepare_cell_inputs,
    teacher_cell_run,
)
from .training.cells import CellTrainConfig, CellTrainingRun

logger = logging.getLogger(__name__)

CELL_OUTPUTS = {
    "teacher_model": "teacher.pt",
    "teacher_cells": "teacher_cells.tif",
    "teacher_nuclei": "teacher_nuclei.tif",
    "student_model": "student.pt",
    "cells": "cells.tif",
    "nuclei": "nuclei.tif",
    "report": "report.md",
}


@dataclass(frozen=True)
class CellPipelineConfig:
    """Everything a cell run is set by."""

    strategy: Literal["supervised", "mean-teacher"] = "supervised"
    model: CellModelConfig = field(default_factory=CellModelConfig)
    teacher: CellTrainConfig = field(default_factory=CellTrainConfig)
    student: CellTrainConfig = field(default_factory=CellTrainConfig)
    mean_teacher: MeanTeacherConfig = field(default_factory=MeanTeacherConfig)

    def __post_init__(self) -> None:
        if self.strategy not in CELL_STRATEGIES:
            raise ValueError(f"unknown cell strategy {self.strategy!r}: {CELL_STRATEGIES}")


@dataclass(frozen=True)
class CellStageProgress:
    """A record of stage ``stage`` (``stage_index`` of ``n_stages``, from 0)."""

    stage: str
    stage_index: int
    n_stages: int
    record: Any


@dataclass
class CellPipelineResult:
    """Files, models and arrays of a run."""

    files: dict[str, Path]
    teacher: CellModel
    student: CellModel
    cells: np.ndarray
    nuclei: np.ndarray
    teacher_cells: np.ndarray
    teacher_nuclei: np.ndarray
    annotated: list[int]


def check_cell_out_dir(out_dir: str | os.PathLike[str], overwrite: bool) -> dict[str, Path]:
    """The output paths; refuse a folder holding a run's files unless ``overwrite``."""
    return check_out_dir(out_dir, overwrite, CELL_OUTPUTS)


def _train(run: CellTrainingRun, stage: str, index: int, n_stages: int):
    for record in run.steps():
        yield CellStageProgress(stage, index, n_stages, record)


def _predict(model: CellModel, image, rgb, stage: str, index: int, n_stages: int):
    records = predict_cells(model, image, rgb)
    while True:
        try:
            record = next(records)
        except StopIteration as stop:
            return stop.value
        yield CellStageProgress(stage, index, n_stages, record)


def run_cell_pipeline(
    image: np.ndarray,
    cells: np.ndarray,
    nuclei: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    config: CellPipelineConfig | None = None,
    rgb: bool | None = None,
    overwrite: bool = False,
    device: str = "cpu",
) -> Generator[CellStageProgress, None, CellPipelineResult]:
    """Teacher, prediction, student, prediction and report; yields a record per step.

    Raises
    ------
    ValueError
        Shapes do not match, no field has a painted cell, or ``mean-teacher`` has no
        unannotated field to learn from.
    """
    config = config or CellPipelineConfig()
    image, cells, nuclei = np.asarray(image), np.asarray(cells), np.asarray(nuclei)
    rgb = bool(image.ndim == 4 and image.shape[-1] == 3) if rgb is None else rgb
    inputs = prepare_cell_inputs(image, cells, nuclei, rgb)
    paths = check_cell_out_dir(out_dir, overwrite)
    if config.strategy == "mean-teacher" and not inputs.unannotated:
        raise ValueError("mean-teacher learns from unannotated fields; every field is painted")
    data, annotated = inputs.data, inputs.annotated
    n_stages = 4 if config.strategy == "mean-teacher" else 2
    run = teacher_cell_run(inputs, config.model, config.teacher, device)
    yield from _train(run, "teacher", 0, n_stages)
    run.save(paths["teacher_model"])
    t_cells, t_nuclei = yield from _predict(run.model, image, rgb, "teacher labels", 1, n_stages)
    _write(paths["teacher_cells"], paths["teacher_nuclei"], t_cells, t_nuclei)
    if config.strategy == "supervised":
        student, s_cells, s_nuclei = run.model, t_cells, t_nuclei
        for source, target in (("teacher_model", "student_model"), ("teacher_cells", "cells"),
                               ("teacher_nuclei", "nuclei")):  # fmt: skip
            shutil.copyfile(paths[source], paths[target])
    else:
        torch.manual_seed(config.student.seed)
        s_run = mean_teacher_run(run.model, inputs, config.student, config.mean_teacher, device)
        student = s_run.model
        yield from _train(s_run, "student (mean-teacher)", 2, n_stages)
        s_run.save(paths["student_model"])
        s_cells, s_nuclei = yield from _predict(student, image, rgb, "student labels", 3, n_stages)
        _write(paths["cells"], paths["nuclei"], s_cells, s_nuclei)
    _report(paths["report"], config, data, cells, nuclei, annotated, t_cells, s_cells, s_nuclei)
    return CellPipelineResult(
        files=paths, teacher=run.model, student=student, cells=s_cells, nuclei=s_nuclei,
        teacher_cells=t_cells, teacher_nuclei=t_nuclei, annotated=annotated,
    )  # fmt: skip


def _write(cells_path: Path, nuclei_path: Path, cells, nuclei) -> None:
    """Both files; the folder was checked (and ``overwrite`` honoured) before any work."""
    write_cell_planes(cells_path, cells, overwrite=True)
    write_labels(nuclei_path, nuclei, overwrite=True)


def _count(planes: np.ndarray) -> int:
    return int(sum(np.count_nonzero(np.unique(p)) for p in planes))


def _report(path, config, data, cells, nuclei, annotated, t_cells, s_cells, s_nuclei) -> None:
    rows = [
        "# napari-distill cell run",
        "",
        f"Strategy: `{config.strategy}`; {len(annotated)} annotated field(s) of "
        f"{cells.shape[0]}; {data.n_cells} painted cells, {data.n_nuclei} painted nuclei"
        f" ({data.cells_without_nucleus} cells without a nucleus, not learnt).",
        "",
        "| field | annotated | painted cells | painted nuclei | teacher cells | cells | nuclei |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in range(cells.shape[0]):
        painted = i in annotated
        rows.append(
            f"| {i} | {'yes' if painted else 'no'} | {_count(cells[i]) if painted else ''} | "
            f"{np.count_nonzero(np.unique(nuclei[i])) if painted else ''} | "
            f"{_count(t_cells[i])} | {_count(s_cells[i])} | "
            f"{np.count_nonzero(np.unique(s_nuclei[i]))} |"
        )
    rows += ["", "Cells are planes `(N, P, H, W)`: overlapping cells lie in different planes,",
             "each whole (docs/cells.md)."]  # fmt: skip
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")
