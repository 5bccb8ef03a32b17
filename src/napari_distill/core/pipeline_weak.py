"""Methods 3 and 4 in one call: the ``run`` of strategies ``mixed`` and ``mutual``.

Method 1's pipeline (:mod:`.pipeline`) rates a teacher's pseudo-labels with a quality
classifier before distilling; these two strategies learn from the annotations themselves, so
there is nothing to rate, and :func:`run_weak_pipeline` goes straight from the annotations to
two labelled stacks that can be compared:

``mixed`` (full masks on some slices, scribbles or points on others)
    One two-branch network trains from scratch; ``teacher_labels.tif`` is its teacher branch
    (full masks only), ``student_labels.tif`` its student branch.
``mutual`` (noisy masks)
    ``teacher.pt`` / ``teacher_labels.tif``: one network trained plainly on the masks (the
    control, the teacher's ordinary training); ``student.pt`` / ``student_labels.tif``: the
    mutually distilled pair (predicting as :attr:`MutualConfig.predict_with` says).

Both write ``report.md`` with the validation scores. Like :func:`run_pipeline`, a generator
of stage records that returns a :class:`WeakPipelineResult`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import InstanceConfig, ModelConfig, PredictConfig, TrainConfig
from .device import select_device
from .evaluation import apply_instance_config
from .inference import predict_bundle
from .io import write_labels
from .models import STUDENT_BRANCH, TEACHER_BRANCH, BranchView, ModelBundle
from .stages import check_out_dir
from .strategies import get_strategy, prediction_bundle
from .training import prepare_pair, train_teacher
from .training.splits import member_splits
from .training.teacher import new_teacher_bundle

logger = logging.getLogger(__name__)

WEAK_STRATEGIES = ("mixed", "mutual")
OUTPUT_FILES = {
    "teacher": "teacher.pt",
    "student": "student.pt",
    "teacher_labels": "teacher_labels.tif",
    "student_labels": "student_labels.tif",
    "report": "report.md",
}
STAGES = {
    "mixed": ("mixed", "teacher labels", "student labels"),
    "mutual": ("control", "control labels", "mutual pair", "student labels"),
}


@dataclass(frozen=True)
class WeakPipelineConfig:
    """Every setting of a ``mixed`` or ``mutual`` run (``steps=None``: from the data)."""

    strategy: str = "mutual"
    strategy_config: Any = None
    model: ModelConfig = ModelConfig()
    teacher: TrainConfig = TrainConfig()
    student: TrainConfig = TrainConfig()
    predict: PredictConfig = PredictConfig()
    cleanup: InstanceConfig = InstanceConfig()

    def __post_init__(self) -> None:
        if self.strategy not in WEAK_STRATEGIES:
            raise ValueError(
                f"the weak-label pipeline runs {WEAK_STRATEGIES}, not {self.strategy!r}"
            )
        spec = get_strategy(self.strategy)
        if self.strategy_config is None:
            object.__setattr__(self, "strategy_config", spec.default_config())
        elif not isinstance(self.strategy_config, spec.config_class):
            raise ValueError(f"strategy {self.strategy!r} takes a {spec.config_class.__name__}")


@dataclass(frozen=True)
class StageProgress:
    """A record of stage ``stage`` (``stage_index`` of ``n_stages``, from 0)."""

    stage: str
    stage_index: int
    n_stages: int
    record: Any


@dataclass
class WeakPipelineResult:
    """What a run produced: file paths, the models, both label stacks and the scores."""

    out_dir: Path
    files: dict[str, Path]
    teacher: ModelBundle | None
    student: ModelBundle
    teacher_labels: np.ndarray
    student_labels: np.ndarray
    scores: dict[str, float | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


def check_weak_out_dir(out_dir: str | os.PathLike[str], overwrite: bool) -> dict[str, Path]:
    """The output paths; refuse a folder holding a run's files unless ``overwrite``."""
    return check_out_dir(out_dir, overwrite, OUTPUT_FILES)


def _stage(records: Generator[Any, None, Any], strategy: str, index: int):
    names = STAGES[strategy]
    while True:
        try:
            record = next(records)
        except StopIteration as stop:
            return stop.value
        yield StageProgress(names[index], index, len(names), record)


def _predict(bundle: ModelBundle, image, config: WeakPipelineConfig, device, rgb, index: int):
    prediction = yield from _stage(
        predict_bundle(
            bundle, image, config=config.predict, device=device, keep_probabilities=False,
            rgb=rgb,
        ),
        config.strategy,
        index,
    )  # fmt: skip
    return np.asarray(prediction.labels)


def _score(bundle: ModelBundle | None) -> float | None:
    value = None if bundle is None else bundle.extra.get("best_score")
    return None if value is None else float(value)


def run_weak_pipeline(
    image: np.ndarray,
    labels: np.ndarray,
    out_dir: str | os.PathLike[str],
    *,
    config: WeakPipelineConfig = WeakPipelineConfig(),  # noqa: B008 - frozen
    weak_labels: np.ndarray | None = None,
    points: np.ndarray | None = None,
    tags: dict[int, tuple[int, ...]] | None = None,
    device: str | torch.device = "auto",
    overwrite: bool = False,
    class_names: dict[int, str] | None = None,
    scale: Sequence[float] | None = None,
    rgb: bool | None = None,
) -> Generator[StageProgress, None, WeakPipelineResult]:
    """Train ``config.strategy`` on the annotations and label the whole stack twice.

    ``labels`` are the full masks (``mixed``) or the noisy masks (``mutual``); ``weak_labels``
    (scribbles, 0 = unknown), ``points`` (rows ``slice, y, x, class``) and ``tags``
    (``{slice: classes it contains}``) feed ``mixed``.

    Raises
    ------
    FileExistsError
        ``out_dir`` holds an earlier run's files and ``overwrite`` is False.
    ValueError
        Bad inputs, or weak labels given to ``mutual`` / missing for ``mixed``.
    """
    mixed = config.strategy == "mixed"
    weak_given = weak_labels is not None or points is not None or bool(tags)
    if mixed and not weak_given:
        raise ValueError("strategy 'mixed' needs weak labels (scribbles), points or slice tags")
    if not mixed and weak_given:
        raise ValueError("strategy 'mutual' learns from noisy masks, not weak labels")
    paths = check_weak_out_dir(out_dir, overwrite)
    torch_device = select_device(device)
    label_scale = None if scale is None else tuple(scale)[-np.ndim(labels) :]
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    control = None
    if mixed:  # classes, normalisation and slice split; the network trains from scratch
        stack, labels_stack, painted = prepare_pair(image, labels, rgb)
        splits = member_splits(labels_stack, painted, config.student, 1)
        reference = new_teacher_bundle(
            stack, labels_stack, painted, splits, config.model.single(), config.student,
            class_names,
        )  # fmt: skip
        strategy_config = dataclasses.replace(config.strategy_config, init_from_teacher=False)
        index = 0
    else:
        run = train_teacher(
            image, labels, model_config=config.model, train_config=config.teacher,
            device=torch_device, class_names=class_names, rgb=rgb,
        )  # fmt: skip
        yield from _stage(run.steps(), "mutual", 0)
        run.save(paths["teacher"])
        control = reference = run.best_bundle()
        seconds["control"] = time.perf_counter() - started
        control_labels = yield from _predict(control, image, config, torch_device, rgb, 1)
        write_labels(paths["teacher_labels"], control_labels, label_scale, overwrite=True)
        strategy_config = config.strategy_config
        index = 2
    started = time.perf_counter()
    options = {"weak_labels": weak_labels, "points": points, "tags": tags} if mixed else {}
    student_run = get_strategy(config.strategy).build(
        reference, image, labels, [], train_config=config.student,
        strategy_config=strategy_config, device=torch_device, rgb=rgb, **options,
    )  # fmt: skip
    yield from _stage(student_run.steps(), config.strategy, index)
    student_run.save(paths["student"])
    student = student_run.best_bundle()
    seconds[config.strategy] = time.perf_counter() - started
    started = time.perf_counter()
    if mixed:
        branches = {}
        for position, branch in enumerate((TEACHER_BRANCH, STUDENT_BRANCH), start=1):
            view = dataclasses.replace(student, model=BranchView(student.model, branch))
            branches[branch] = yield from _predict(
                view, image, config, torch_device, rgb, min(position, 2)
            )
        teacher_labels, student_labels = branches[TEACHER_BRANCH], branches[STUDENT_BRANCH]
        write_labels(paths["teacher_labels"], teacher_labels, label_scale, overwrite=True)
    else:
        teacher_labels = control_labels
        student_labels = yield from _predict(
            prediction_bundle(student), image, config, torch_device, rgb, 3
        )
    student_labels = apply_instance_config(student_labels, config.cleanup)
    write_labels(paths["student_labels"], student_labels, label_scale, overwrite=True)
    seconds["labels"] = time.perf_counter() - started
    scores = {"teacher": _score(control), "student": _score(student)}
    given = {"scribbles": weak_labels is not None, "points": points is not None, "tags": tags}
    _write_report(paths, config, student, scores, seconds, given)
    logger.info(
        "%s run done in %.0f s: outputs in %s", config.strategy, sum(seconds.values()), out_dir
    )
    return WeakPipelineResult(
        Path(out_dir), paths, control, student, teacher_labels, student_labels, scores, seconds
    )


def _write_report(paths, config, student, scores, seconds, given) -> None:
    """A short ``report.md``: what was trained on, the validation scores, the files."""
    extra = student.extra
    lines = [f"# napari-distill run: strategy `{config.strategy}`", ""]
    if config.strategy == "mixed":
        kinds = [name for name in ("scribbles", "points") if given[name]]
        lines += [
            f"- full masks on {len(extra['train_slices'])} training slice(s), weak labels "
            f"({' and '.join(kinds) or 'none'}) on {len(extra['accepted_slices'])} other "
            "slice(s)",
            "- `teacher_labels.tif`: the teacher branch (full masks only); "
            "`student_labels.tif`: the student branch",
        ]
        if given["tags"]:
            lines.append(f"- slice tags on {len(given['tags'])} slice(s)")
    else:
        settings = config.strategy_config
        lines += [
            f"- noisy masks on {len(extra['train_slices'])} training slice(s); expected wrong "
            f"share {settings.noise_rate:.2f}",
            "- `teacher_labels.tif`: one network trained plainly on the masks (the control); "
            f"`student_labels.tif`: the mutually distilled pair ({settings.predict_with})",
        ]
    validation = extra.get("validation_slices") or []
    for name, value in scores.items():
        if value is not None:
            lines.append(f"- {name}: validation Dice {value:.3f} on slices {validation}")
    if config.strategy == "mutual":
        lines.append("- validation slices carry the same noise as the training masks")
    lines += ["", "Seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()), ""]
    paths["report"].write_text("\n".join(lines))
