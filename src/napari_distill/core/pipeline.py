"""Method 1 in one call: teacher -> quality classifier -> selection -> student -> labels.

:func:`run_pipeline` is a generator like every long computation of the core: it yields a
:class:`PipelineProgress` wrapping each stage's own records (training steps, slices predicted)
and returns a :class:`PipelineResult`. It writes into ``out_dir``:

``teacher.pt``, ``quality.pt``, ``student.pt``
    The three checkpoints (the teacher's and the student's also resume training).
``teacher_labels.tif``, ``student_labels.tif``
    Full stacks of predicted labels (annotated slices included, as predicted).
``pseudo_labels.tif``
    The labels the quality classifier scored and the student learnt from: the teacher's, or
    per class combined with label propagation where that scored better on the painted slices
    the teacher held out (:mod:`.stages`; ``report.md`` says which and why).
``scores.csv``, ``scores.json``
    Per-slice quality scores and the selection (accepted slices at ``tau``).
``report.md``, ``scores.png``
    The numbers of the run and a plot of the per-slice scores with ``tau``.

Existing files of these names are never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import (
    InstanceConfig,
    KDConfig,
    ModelConfig,
    PredictConfig,
    PropagationConfig,
    QualityConfig,
    TrainConfig,
)
from .device import device_text, select_device
from .evaluation import Comparison, apply_instance_config, check_cleanup_classes, describe_cleanup
from .inference import Prediction, predict_bundle
from .io import write_labels
from .models import ModelBundle
from .preprocess import annotated_slices
from .quality import Selection, SnapshotRecorder, fit_quality, save_quality, score_slices
from .report import LEAST_CONFIDENT_LISTED, RunSummary, plot_scores, write_report
from .stages import (
    OUTPUT_DESCRIPTIONS,
    check_out_dir,
    held_out,
    members_held_out,
    propagation_stage,
    validated,
)
from .strategies import get_strategy
from .training import TeacherPlan, train_teacher

logger = logging.getLogger(__name__)

STAGES = ("teacher", "teacher labels", "propagation", "quality", "student", "student labels")


@dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run; the defaults suit a first try.

    Attributes
    ----------
    model:
        The teacher's network (input and output channels are set from the data).
    teacher:
        Teacher training (``steps=None``: chosen from the data, with early stopping).
    quality:
        The quality classifier; ``quality.tau`` is the acceptance threshold.
    strategy:
        The student's strategy (a key of :data:`~napari_distill.core.strategies.STRATEGIES`).
    strategy_config:
        Its settings (None: the strategy's defaults).
    student:
        Student training (``steps=None``: chosen from the data, with early stopping).
    predict:
        Tiled prediction for every stage.
    cleanup:
        The clean-up of the student's labels (``"semantic"`` :class:`InstanceConfig`: one
        piece of the classes named, small pieces removed; the default does nothing).
    plan:
        The teacher's settings planned from the data (``core.training.plan_for_data``), applied
        over ``model`` and ``teacher``, logged and stored in ``teacher.pt``; None: as they are.
    propagation:
        The label propagation the teacher is compared with on the painted slices it held out
        (and combined with per class where it scored better); None: the teacher alone.
    """

    model: ModelConfig = ModelConfig()
    teacher: TrainConfig = TrainConfig()
    quality: QualityConfig = QualityConfig()
    strategy: str = "kd"
    strategy_config: Any = field(default_factory=KDConfig)
    student: TrainConfig = TrainConfig()
    predict: PredictConfig = PredictConfig()
    cleanup: InstanceConfig = InstanceConfig()
    plan: TeacherPlan | None = None
    propagation: PropagationConfig | None = PropagationConfig()

    def __post_init__(self) -> None:
        if self.cleanup.mode != "semantic":
            raise ValueError(
                f"the pipeline's clean-up is semantic (one label per class), got mode "
                f"{self.cleanup.mode!r}"
            )
        spec = get_strategy(self.strategy)  # raises with the known names
        if self.strategy_config is None:
            object.__setattr__(self, "strategy_config", spec.default_config())
        elif not isinstance(self.strategy_config, spec.config_class):
            raise ValueError(
                f"strategy {self.strategy!r} takes a {spec.config_class.__name__}, got a "
                f"{type(self.strategy_config).__name__}"
            )

    def with_steps(self, steps: int | None) -> PipelineConfig:
        """The same settings with a fixed step budget for teacher, classifier and student."""
        if steps is None:
            return self
        return dataclasses.replace(
            self,
            teacher=dataclasses.replace(self.teacher, steps=steps),
            student=dataclasses.replace(self.student, steps=steps),
            quality=dataclasses.replace(self.quality, steps=steps),
        )


@dataclass(frozen=True)
class PipelineProgress:
    """A record of stage ``stage`` (``stage_index`` of ``n_stages``, from 0)."""

    stage: str
    stage_index: int
    n_stages: int
    record: Any


@dataclass
class PipelineResult:
    """What a run produced: file paths, the models, the selection and the summary."""

    out_dir: Path
    files: dict[str, Path]
    summary: RunSummary
    selection: Selection
    teacher: ModelBundle
    student: ModelBundle
    teacher_labels: np.ndarray
    student_labels: np.ndarray
    comparison: Comparison | None = None


def stage_records(
    records: Generator[Any, None, Any], index: int, stages: Sequence[str] = STAGES
) -> Generator[PipelineProgress, None, Any]:
    """Wrap the records of stage ``index`` of ``stages``; return its result."""
    while True:
        try:
            record = next(records)
        except StopIteration as stop:
            return stop.value
        yield PipelineProgress(stages[index], index, len(stages), record)


def teacher_stage(
    image: Any,
    labels: np.ndarray,
    config: PipelineConfig,
    save_to: Path,
    *,
    device: torch.device,
    class_names: Mapping[int, str] | None,
    rgb: bool | None,
    plan: TeacherPlan | None,
    stages: Sequence[str] = STAGES,
) -> Generator[PipelineProgress, None, tuple[ModelBundle, list]]:
    """Stage 0 of a pipeline: the teacher trained (its snapshots kept for the quality
    classifier), saved to ``save_to``; returns its best bundle and the snapshots."""
    run = train_teacher(
        image, labels, model_config=config.model, train_config=config.teacher,
        device=device, class_names=class_names, rgb=rgb, plan=plan,
    )  # fmt: skip
    recorder = SnapshotRecorder(run.model)
    yield from stage_records(recorder.record(run.steps()), 0, stages)
    run.save(save_to)
    return run.best_bundle(), recorder.snapshots


def run_pipeline(
    image: np.ndarray,
    labels: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    config: PipelineConfig = PipelineConfig(),  # noqa: B008 - frozen, never mutated
    device: str | torch.device = "auto",
    overwrite: bool = False,
    class_names: dict[int, str] | None = None,
    scale: Sequence[float] | None = None,
    rgb: bool | None = None,
) -> Generator[PipelineProgress, None, PipelineResult]:
    """Train a teacher, rate its pseudo-labels, train a student, and label the whole stack.

    Parameters
    ----------
    image:
        A stack ``(N, H, W)`` / ``(N, H, W, 3)`` (or a single 2D image).
    labels:
        Class ids with the image's spatial shape; slices with any non-zero label are the
        annotated ones.
    out_dir:
        Folder for the outputs (created if needed).
    config:
        Every setting (see :class:`PipelineConfig`).
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a torch device.
    overwrite:
        Replace the files of an earlier run in ``out_dir``.
    class_names:
        ``{class_id: name}`` stored with the models.
    scale:
        Voxel size per spatial axis, written into the label TIFFs.
    rgb:
        Whether the image's last axis is colour (None guesses).

    Yields
    ------
    PipelineProgress
        Each stage's records (``TrainStep``, ``PredictProgress``, ...), with the stage.

    Raises
    ------
    FileExistsError
        ``out_dir`` holds an earlier run's files and ``overwrite`` is False.
    ValueError
        Bad inputs (shapes, no annotated slice, one class, ...), from the stage that found it.
    """
    paths = check_out_dir(out_dir, overwrite)
    check_cleanup_classes(config.cleanup, labels)  # before the slow part
    torch_device = select_device(device)
    seconds: dict[str, float] = {}
    label_scale = None if scale is None else tuple(scale)[-np.ndim(labels) :]

    started = time.perf_counter()
    teacher, snapshots = yield from teacher_stage(
        image, labels, config, paths["teacher"], device=torch_device, class_names=class_names,
        rgb=rgb, plan=config.plan,
    )  # fmt: skip
    seconds["teacher"] = time.perf_counter() - started

    started = time.perf_counter()
    # ignore_cleanup_errors: on Windows a still-mapped file cannot be deleted at once.
    with tempfile.TemporaryDirectory(
        dir=paths["teacher"].parent, prefix=".work-", ignore_cleanup_errors=True
    ) as work:
        # Probabilities go to a memory map: a large stack's (K, N, H, W) need not fit in RAM.
        prediction: Prediction = yield from stage_records(
            predict_bundle(
                teacher, image, config=config.predict, device=torch_device, out_dir=work, rgb=rgb
            ),
            1,
        )
        write_labels(paths["teacher_labels"], prediction.labels, label_scale, overwrite=True)
        teacher_labels = np.array(prediction.labels)  # out of the memory map before it goes
        seconds["teacher labels"] = time.perf_counter() - started

        started = time.perf_counter()
        comparison = None
        if config.propagation is not None:
            prediction, comparison = yield from stage_records(
                propagation_stage(
                    teacher, image, labels, prediction, config.propagation,
                    predict_config=config.predict, device=torch_device, work_dir=work, rgb=rgb,
                ),
                2,
            )  # fmt: skip
        write_labels(paths["pseudo_labels"], prediction.labels, label_scale, overwrite=True)
        seconds["propagation"] = time.perf_counter() - started

        started = time.perf_counter()
        quality = yield from stage_records(
            fit_quality(
                teacher, image, labels, config=config.quality,
                teacher_snapshots=snapshots, device=torch_device,
                predict_config=config.predict, rgb=rgb,
            ),
            3,
        )  # fmt: skip
        save_quality(paths["quality"], quality)
        scores = yield from stage_records(
            score_slices(quality, image, prediction, device=torch_device, rgb=rgb), 3
        )
        pseudo_labels = np.array(prediction.labels)
        del prediction
    annotated = tuple(int(i) for i in annotated_slices(labels))
    selection = scores.selection(config.quality.tau, annotated)
    selection.save_csv(paths["scores_csv"])
    selection.save_json(paths["scores_json"])
    seconds["quality"] = time.perf_counter() - started

    started = time.perf_counter()
    spec = get_strategy(config.strategy)
    student_run = spec.build(
        teacher, image, labels, selection.accepted_slices,
        train_config=config.student, strategy_config=config.strategy_config,
        device=torch_device, pseudo_labels=pseudo_labels, predict_config=config.predict, rgb=rgb,
    )  # fmt: skip
    yield from stage_records(student_run.steps(), 4)
    student_run.save(paths["student"])
    student = student_run.best_bundle()
    seconds["student"] = time.perf_counter() - started

    started = time.perf_counter()
    student_prediction = yield from stage_records(
        predict_bundle(
            student, image, config=config.predict, device=torch_device,
            keep_probabilities=False, rgb=rgb,
        ),
        5,
    )  # fmt: skip
    student_labels = apply_instance_config(student_prediction.labels, config.cleanup)
    cleanup = describe_cleanup(config.cleanup)
    if cleanup:
        logger.info("student labels cleaned up: %s", cleanup)
    write_labels(paths["student_labels"], student_labels, label_scale, overwrite=True)
    seconds["student labels"] = time.perf_counter() - started

    summary = RunSummary(
        n_slices=int(teacher_labels.shape[0]) if teacher_labels.ndim == 3 else 1,
        annotated=annotated,
        validation=held_out(teacher),
        teacher_score=validated(teacher),
        student_score=validated(student),
        quality_spearman=float("nan") if quality.report is None else quality.report.spearman,
        tau=float(config.quality.tau),
        accepted=tuple(selection.accepted_slices),
        strategy=config.strategy,
        score_agreement=selection.agreement(),
        least_confident=tuple(selection.worst_first("confidence")[:LEAST_CONFIDENT_LISTED]),
        teachers=teacher.model_config.members,
        views=teacher.model_config.views,
        member_validation=members_held_out(teacher),
        stage_seconds=seconds,
        device=device_text(torch_device),
        files={
            OUTPUT_DESCRIPTIONS[k]: p.name for k, p in paths.items() if k in OUTPUT_DESCRIPTIONS
        },
        comparison=comparison,
    )
    plot_scores(
        paths["plot"], scores.quality, summary.tau, summary.annotated, summary.accepted,
        confidence=scores.confidence,
    )  # fmt: skip
    write_report(paths["report"], summary, paths["plot"].name)
    logger.info("pipeline done in %.0f s: outputs in %s", sum(seconds.values()), paths["report"])
    return PipelineResult(
        out_dir=Path(out_dir),
        files=paths,
        summary=summary,
        selection=selection,
        teacher=teacher,
        student=student,
        teacher_labels=teacher_labels,
        student_labels=np.asarray(student_labels),
        comparison=comparison,
    )
