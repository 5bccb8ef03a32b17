"""The cell model's training runs, built from painted fields: the teacher (supervised), the
``mean-teacher`` student, and either one resumed from its checkpoint.

The command line's cell pipeline and the Teacher and Student widgets build their runs here, so
a run started in one resumes in the other: a checkpoint carries the strategy, its settings,
the optimiser, the random states and (``mean-teacher``) the EMA teacher, its adaptors and the
nuclei it last found; the painted fields themselves come from the caller again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..device import select_device
from ..inference.cells import fields_as_input
from ..io.cells import annotated_fields, check_planes
from ..models.cells import CellModel, CellModelConfig, load_cell_model, load_training_state
from ..training.cells import (
    CellTrainConfig,
    CellTrainingRun,
    SupervisedCellObjective,
    new_cell_model,
)
from ..training.cells_data import CellData, measure_geometry, prepare_cell_data
from .cell_configs import MeanTeacherConfig
from .mean_teacher import MeanTeacherObjective

logger = logging.getLogger(__name__)

CELL_STRATEGIES = ("supervised", "mean-teacher")


@dataclass
class CellInputs:
    """Painted fields ready for a run: normalised fields ``(N, C, H, W)``, which are painted,
    and the cells paired with their nuclei."""

    fields: np.ndarray
    annotated: list[int]
    data: CellData

    @property
    def unannotated(self) -> list[int]:
        """Fields without a painted cell: what ``mean-teacher`` learns from its teacher."""
        return [i for i in range(self.fields.shape[0]) if i not in self.annotated]


def check_cell_inputs(image: np.ndarray, cells: np.ndarray, nuclei: np.ndarray, rgb: bool) -> None:
    """Raise ValueError unless fields ``(N, H, W[, 3])``, planes ``(N, P, H, W)`` and nuclei
    ``(N, H, W)`` agree."""
    if image.ndim != (4 if rgb else 3):
        raise ValueError(f"fields are (N, H, W) grey or (N, H, W, 3) RGB, got {image.shape}")
    n, h, w = image.shape[0], image.shape[1], image.shape[2]
    if cells.ndim != 4 or cells.shape[0] != n or cells.shape[2:] != (h, w):
        raise ValueError(f"cells {cells.shape} do not match the fields {image.shape}: need "
                         "(N, P, H, W) planes")  # fmt: skip
    if nuclei.shape != (n, h, w):
        raise ValueError(f"nuclei {nuclei.shape} do not match the fields: need (N, H, W)")
    check_planes(cells)


def prepare_cell_inputs(
    image: np.ndarray, cells: np.ndarray, nuclei: np.ndarray, rgb: bool, channels: int | None = None
) -> CellInputs:
    """Check, normalise and pair (``channels``: what a trained model takes, when resuming).

    Raises
    ------
    ValueError
        Shapes do not match, or no field has a painted cell.
    """
    image, cells, nuclei = np.asarray(image), np.asarray(cells), np.asarray(nuclei)
    check_cell_inputs(image, cells, nuclei, rgb)
    annotated = annotated_fields(cells)
    if not annotated:
        raise ValueError("no field has a painted cell: paint cells and nuclei on a few fields")
    fields = fields_as_input(image, rgb, channels)
    data = prepare_cell_data(fields, cells, nuclei, annotated)
    if data.cells_without_nucleus:
        logger.warning("%d painted cells have no painted nucleus: not learnt",
                       data.cells_without_nucleus)  # fmt: skip
    return CellInputs(fields, annotated, data)


def teacher_cell_run(
    inputs: CellInputs,
    model_config: CellModelConfig | None = None,
    train_config: CellTrainConfig | None = None,
    device: str | torch.device = "cpu",
) -> CellTrainingRun:
    """A new cell model trained on the painted fields alone, its geometry measured from them.

    Raises
    ------
    ValueError
        No painted cell has a painted nucleus.
    """
    model_config = model_config or CellModelConfig()
    train_config = train_config or CellTrainConfig()
    config = measure_geometry(
        inputs.data, dataclasses.replace(model_config, in_channels=inputs.fields.shape[1])
    )
    return _supervised(new_cell_model(config, train_config.seed), inputs, train_config, device)


def mean_teacher_run(
    teacher: CellModel,
    inputs: CellInputs,
    train_config: CellTrainConfig | None = None,
    settings: MeanTeacherConfig | None = None,
    device: str | torch.device = "cpu",
) -> CellTrainingRun:
    """A student that starts from ``teacher`` and learns the unannotated fields from its EMA.

    Raises
    ------
    ValueError
        Every field is painted (nothing for the mean teacher to learn from), or the teacher
        takes other channels than the fields have.
    """
    train_config = train_config or CellTrainConfig()
    settings = settings or MeanTeacherConfig()
    if not inputs.unannotated:
        raise ValueError("mean-teacher learns from unannotated fields; every field is painted")
    if teacher.config.in_channels != inputs.fields.shape[1]:
        raise ValueError(f"the teacher takes {teacher.config.in_channels} channel(s), the "
                         f"fields have {inputs.fields.shape[1]}")  # fmt: skip
    return _mean_teacher(_copy_of(teacher, train_config), inputs, train_config, settings, device)


def student_cell_run(
    strategy: str,
    teacher: CellModel,
    inputs: CellInputs,
    train_config: CellTrainConfig | None = None,
    settings: MeanTeacherConfig | None = None,
    device: str | torch.device = "cpu",
) -> CellTrainingRun:
    """A student that starts from ``teacher``: ``mean-teacher`` (:func:`mean_teacher_run`), or
    ``supervised``, the same steps on the painted fields alone (the control that shows what
    the unpainted fields add).

    Raises
    ------
    ValueError
        An unknown strategy, or what :func:`mean_teacher_run` refuses.
    """
    if strategy == "mean-teacher":
        return mean_teacher_run(teacher, inputs, train_config, settings, device)
    if strategy != "supervised":
        raise ValueError(f"unknown cell strategy {strategy!r}: {CELL_STRATEGIES}")
    train_config = train_config or CellTrainConfig()
    return _supervised(_copy_of(teacher, train_config), inputs, train_config, device)


def _copy_of(teacher: CellModel, train_config: CellTrainConfig) -> CellModel:
    """A new model with ``teacher``'s weights: where a student starts."""
    student = new_cell_model(teacher.config, train_config.seed)
    student.load_state_dict(teacher.state_dict())
    return student


def _supervised(model, inputs, train_config, device) -> CellTrainingRun:
    """``model`` trained on the painted fields alone."""
    objective = SupervisedCellObjective(inputs.data, model.config, train_config)
    extra = {"strategy": "supervised", "annotated": inputs.annotated}
    return CellTrainingRun(model, objective, train_config, device=device, extra=extra)


def _mean_teacher(student, inputs, train_config, settings, device) -> CellTrainingRun:
    unlabeled = [torch.from_numpy(inputs.fields[i]) for i in inputs.unannotated]
    supervised = SupervisedCellObjective(inputs.data, student.config, train_config)
    objective = MeanTeacherObjective(supervised, student, unlabeled, settings)
    extra = {"strategy": "mean-teacher", "annotated": inputs.annotated,
             "settings": dataclasses.asdict(settings)}  # fmt: skip
    return CellTrainingRun(student, objective, train_config, device=device, extra=extra)


def resume_cell_run(
    path: str | os.PathLike[str],
    image: np.ndarray,
    cells: np.ndarray,
    nuclei: np.ndarray,
    rgb: bool,
    *,
    steps: int | None = None,
    device: str | torch.device = "cpu",
) -> CellTrainingRun:
    """The run saved in ``path`` (by ``CellTrainingRun.save``), continued on the same painted
    fields: its strategy, settings, optimiser, random states and (``mean-teacher``) EMA
    teacher come back, so it takes the steps an uninterrupted run would have taken.

    ``steps``: a new total (at least the steps already trained); default the saved one.

    Raises
    ------
    ValueError
        Not a cell checkpoint, one saved without its training state, another set of fields
        (the painted fields differ), or ``steps`` below the saved step.
    """
    model, step, extra = load_cell_model(path)
    state = load_training_state(path)
    if state is None:
        raise ValueError(f"{path} holds a model but not its training state: it cannot resume")
    train_config = CellTrainConfig(**extra["train_config"])
    if steps is not None:
        if steps < step:
            raise ValueError(f"{os.fspath(path)} has already trained {step} steps: a total of "
                             f"{steps} steps cannot be fewer")  # fmt: skip
        train_config = dataclasses.replace(train_config, steps=steps)
    inputs = prepare_cell_inputs(image, cells, nuclei, rgb, model.config.in_channels)
    if list(extra.get("annotated", [])) != inputs.annotated:
        raise ValueError(
            f"{os.fspath(path)} was trained with fields {extra.get('annotated')} painted, "
            f"these have {inputs.annotated}: resume on the same fields"
        )
    if extra.get("strategy") == "mean-teacher":
        settings = MeanTeacherConfig(**extra.get("settings", {}))
        run = _mean_teacher(model, inputs, train_config, settings, device)
    else:
        run = _supervised(model, inputs, train_config, device)
    run.step = step
    run.earlier_losses = [float(v) for v in extra.get("loss", [])]
    run.load_training_state(state)
    return run


def new_or_resumed_cell_run(
    new: Callable[[CellInputs, str], CellTrainingRun],
    image: np.ndarray,
    cells: np.ndarray,
    nuclei: np.ndarray,
    rgb: bool,
    *,
    device: str | torch.device = "auto",
    resume_from: str | os.PathLike[str] | None = None,
) -> CellTrainingRun:
    """The run saved in ``resume_from`` continued (:func:`resume_cell_run`), or ``new`` called
    with the prepared inputs and the selected device (``"auto"`` picks CUDA, MPS or CPU).

    Raises
    ------
    ValueError
        What :func:`prepare_cell_inputs`, ``new`` or :func:`resume_cell_run` refuse.
    """
    selected = str(select_device(device))
    if resume_from is not None:
        return resume_cell_run(resume_from, image, cells, nuclei, rgb, device=selected)
    return new(prepare_cell_inputs(image, cells, nuclei, rgb), selected)
