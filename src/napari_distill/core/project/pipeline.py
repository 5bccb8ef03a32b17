"""Method 1 over a project of many images: one teacher from the painted slices of all of them,
pseudo-labels of every image, one student from the painted and the accepted slices of all.

:func:`run_project_pipeline` is :func:`~napari_distill.core.pipeline.run_pipeline`'s
counterpart for a :class:`~napari_distill.core.project.Project`, a generator of the same
:class:`~napari_distill.core.pipeline.PipelineProgress` records. The volumes are copied into one
stack of memory maps (:mod:`.stack`; no volume's context reaches another), so the
teacher, the quality classifier and the student train with the single-stack code. The teacher
then predicts each image (its probabilities on disk, scored, then deleted), and the student
labels each image, through the batch code of ``predict --out-dir`` (:mod:`.predict`): in this
process one image after another, or one task per image on a Dask cluster (``client``), with
the same files either way. Memory holds one volume's prediction at a time, not the
project's.

Writes into ``out_dir``: ``teacher.pt``, ``quality.pt``, ``student.pt``, per image
``<name>_teacher_labels.tif`` and ``<name>_labels.tif``, ``scores.csv`` / ``scores.json``
(with an ``image`` column), ``report.md`` (a row per image) and ``project.json`` (the
project, to repeat the run when its images are files). Existing files are never replaced
unless ``overwrite``.

Not done per project: the comparison with label propagation (it fills one volume from its
own painted slices), and a views teacher (its members would reslice the stack across its
volumes; :data:`~.stack.VIEWS_UNAVAILABLE`): the plan says so and views asked for are refused.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..device import device_text, select_device
from ..evaluation import check_cleanup_classes
from ..io import check_output_folder
from ..models import ModelBundle
from ..pipeline import PipelineConfig, PipelineProgress, stage_records, teacher_stage
from ..quality import fit_quality, save_quality
from ..quality.project_selection import ProjectSelection
from ..stages import validated
from ..strategies import get_strategy
from ..training import plan_for_data
from .files import Project
from .predict import Placement, stack_volumes, student_predictions, teacher_predictions
from .report import ImageSummary, ProjectSummary, mean_score, write_project_report
from .stack import VIEWS_UNAVAILABLE, ProjectStack, Span, build_project_stack

logger = logging.getLogger(__name__)

PROJECT_STAGES = ("teacher", "quality", "teacher labels", "student", "student labels")
#: The student's sampler holds each training slice's input in memory: at most this many
#: pseudo-labelled slices (the best-scored across images) keep its memory bounded whatever
#: the number of images.
MAX_PSEUDO_SLICES = 2000
COMMON_FILES = {
    "teacher": "teacher.pt",
    "quality": "quality.pt",
    "student": "student.pt",
    "scores_csv": "scores.csv",
    "scores_json": "scores.json",
    "report": "report.md",
    "project": "project.json",
}
DESCRIPTIONS = {
    "teacher": "teacher checkpoint (resumable)",
    "quality": "quality classifier checkpoint",
    "student": "student checkpoint (resumable)",
    "scores_csv": "per-(image, slice) quality scores and selection",
    "scores_json": "the same, as JSON",
    "project": "the project (images, labels, settings) to repeat the run",
}


def _stage(
    records: Generator[Any, None, Any], index: int
) -> Generator[PipelineProgress, None, Any]:
    return stage_records(records, index, PROJECT_STAGES)


@dataclass
class ProjectResult:
    """What a project's run produced."""

    out_dir: Path
    files: dict[str, Path]
    image_files: dict[str, dict[str, Path]]
    summary: ProjectSummary
    selection: ProjectSelection
    teacher: ModelBundle
    student: ModelBundle


def project_output_paths(
    out_dir: str | os.PathLike[str], names: tuple[str, ...]
) -> tuple[dict[str, Path], dict[str, dict[str, Path]]]:
    """The run's common files and, per image, its teacher's and student's labels."""
    directory = Path(out_dir)
    common = {key: directory / name for key, name in COMMON_FILES.items()}
    per_image = {
        name: {
            "teacher_labels": directory / f"{name}_teacher_labels.tif",
            "labels": directory / f"{name}_labels.tif",
        }
        for name in names
    }
    return common, per_image


def check_project_out_dir(
    out_dir: str | os.PathLike[str], names: tuple[str, ...], overwrite: bool
) -> tuple[dict[str, Path], dict[str, dict[str, Path]]]:
    """Create ``out_dir`` if needed; refuse when it holds this run's files, unless
    ``overwrite`` (the message names them)."""
    common, per_image = project_output_paths(out_dir, names)
    paths = list(common.values()) + [p for d in per_image.values() for p in d.values()]
    existing = sorted(p.name for p in paths if p.exists())
    if existing and not overwrite:
        shown = ", ".join(existing[:6]) + (
            f" and {len(existing) - 6} more" if len(existing) > 6 else ""
        )
        raise FileExistsError(
            f"{out_dir} already holds {shown} from an earlier run: choose another folder or "
            "pass overwrite=True (--overwrite) to replace them"
        )
    check_output_folder(out_dir, create=True)
    return common, per_image


def stack_of_project(project: Project, work: Path, pad: int) -> tuple[ProjectStack, list[Any]]:
    """The project's stack in ``work`` (``pad``: the model's context slices), and each image's
    ``(scale, unit, 2D?)`` for writing its labels. The napari widgets build theirs with it."""
    shapes, meta = [], []
    for item in project.images:
        data, _ = item.read()
        spatial = data.data.ndim - (1 if data.rgb else 0)
        shapes.append(1 if spatial == 2 else int(data.data.shape[0]))
        meta.append((data.scale, data.unit, spatial == 2))

    def volumes():
        for item in project.images:
            data, labels = item.read()
            yield item.name, data.data, labels, data.rgb

    return build_project_stack(volumes(), shapes, work, pad), meta


def _worker_device(device: str | torch.device) -> str:
    """The device a worker chooses for itself: the one asked for (``auto`` by default)."""
    return device if isinstance(device, str) else str(device)


def _image_summary(
    span: Span, selection: ProjectSelection, per_image: dict[str, dict[str, Path]]
) -> ImageSummary:
    chosen = selection[span.name]
    scored, mean = mean_score([v for i, v in chosen.scores.items() if i not in chosen.annotated])
    return ImageSummary(
        span.name, span.n, len(chosen.annotated), len(chosen.accepted), scored, mean,
        per_image[span.name]["teacher_labels"].name, per_image[span.name]["labels"].name,
    )  # fmt: skip


def _capped(
    selection: ProjectSelection, stack: ProjectStack, cap: int | None
) -> tuple[list[int], bool]:
    """The accepted slices as the stack's indices, the best-scored ``cap`` of them."""
    accepted = [
        (selection[name].scores.get(i, 0.0), stack.to_global(name, i))
        for name, slices in selection.accepted().items()
        for i in slices
    ]
    capped = cap is not None and len(accepted) > cap
    if capped:
        accepted = sorted(accepted, key=lambda v: -v[0])[:cap]
        logger.info("student: the %d best-scored of the accepted slices", cap)
    return sorted(i for _, i in accepted), capped


def run_project_pipeline(
    project: Project,
    out_dir: str | os.PathLike[str],
    *,
    config: PipelineConfig = PipelineConfig(),  # noqa: B008 - frozen, never mutated
    device: str | torch.device = "auto",
    overwrite: bool = False,
    class_names: dict[int, str] | None = None,
    plan_given: Mapping[str, Any] | None = None,
    max_pseudo_slices: int | None = MAX_PSEUDO_SLICES,
    client: Any | None = None,
    worker_threads: int | None = 1,
) -> Generator[PipelineProgress, None, ProjectResult]:
    """Teacher from every painted slice, pseudo-labels of every image, student, labels.

    Parameters
    ----------
    project:
        The images, their labels (checked against the images' shapes first) and settings.
    config:
        As :func:`~napari_distill.core.pipeline.run_pipeline`'s (``propagation`` unused;
        ``plan`` used as given).
    plan_given:
        Plan the teacher from the project's painted slices, keeping these user settings
        (one axis: views off); None: ``config.plan`` or the configs as they are.
    max_pseudo_slices:
        At most this many accepted slices (the best-scored) train the student; None: all.
    client, worker_threads:
        A ``distributed.Client``: the teacher's and the student's predictions of the images
        run on its cluster, one task per image (:mod:`.predict`; its workers must see
        ``out_dir`` at the same path), with ``worker_threads`` torch threads each; None: in
        this process. The files are the same either way.

    Raises
    ------
    ProjectError
        A labels file's shape differs from its image's (named), or nothing is painted.
    FileExistsError
        ``out_dir`` holds this run's files and ``overwrite`` is False.
    ValueError
        Views asked for (``config.model`` or ``plan_given``), the images' slices differ in size
        or colours (the image named), or a stage's error.
    """
    project.check()
    planned = config.plan.values() if config.plan is not None else {}
    if config.model.views or planned.get("views") or (plan_given or {}).get("views"):
        raise ValueError(f"views cannot be used for several images: {VIEWS_UNAVAILABLE}")
    common, per_image = check_project_out_dir(out_dir, project.names, overwrite)
    torch_device = select_device(device)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(
        dir=out_dir, prefix=".work-", ignore_cleanup_errors=True
    ) as work_name:
        work = Path(work_name)
        stack, meta = stack_of_project(project, work / "stack", config.model.context_slices)
        check_cleanup_classes(config.cleanup, stack.labels)
        plan = config.plan
        if plan_given is not None:
            plan = plan_for_data(
                stack.image, stack.labels, rgb=stack.rgb, device=torch_device,
                given=plan_given, model_config=config.model, train_config=config.teacher,
                class_names=class_names, one_axis=VIEWS_UNAVAILABLE,
            )  # fmt: skip

        started = time.perf_counter()
        teacher, snapshots = yield from teacher_stage(
            stack.image, stack.labels, config, common["teacher"], device=torch_device,
            class_names=class_names, rgb=stack.rgb, plan=plan, stages=PROJECT_STAGES,
        )  # fmt: skip
        seconds["teacher"] = time.perf_counter() - started

        started = time.perf_counter()
        quality = yield from _stage(
            fit_quality(
                teacher, stack.image, stack.labels, config=config.quality,
                teacher_snapshots=snapshots, device=torch_device,
                predict_config=config.predict, rgb=stack.rgb,
            ),
            1,
        )  # fmt: skip
        save_quality(common["quality"], quality)
        seconds["quality"] = time.perf_counter() - started

        started = time.perf_counter()
        place = Placement(torch_device, client, _worker_device(device), worker_threads)
        volumes = stack_volumes(stack, meta)
        selections = yield from _stage(
            teacher_predictions(
                teacher, quality, stack, volumes,
                {name: files["teacher_labels"] for name, files in per_image.items()},
                config=config.predict, tau=config.quality.tau, place=place, work=work,
            ),
            2,
        )  # fmt: skip
        selection = ProjectSelection(selections)
        selection.save_csv(common["scores_csv"])
        selection.save_json(common["scores_json"])
        seconds["teacher labels"] = time.perf_counter() - started

        started = time.perf_counter()
        accepted, capped = _capped(selection, stack, max_pseudo_slices)
        student_run = get_strategy(config.strategy).build(
            teacher, stack.image, stack.labels, accepted,
            train_config=config.student, strategy_config=config.strategy_config,
            device=torch_device, pseudo_labels=stack.pseudo_labels,
            predict_config=config.predict, rgb=stack.rgb,
        )  # fmt: skip
        yield from _stage(student_run.steps(), 3)
        student_run.save(common["student"])
        student = student_run.best_bundle()
        seconds["student"] = time.perf_counter() - started

        started = time.perf_counter()
        yield from _stage(
            student_predictions(
                student, volumes, {name: files["labels"] for name, files in per_image.items()},
                config=config.predict, cleanup=config.cleanup, place=place,
            ),
            4,
        )  # fmt: skip
        images = [_image_summary(span, selection, per_image) for span in stack.spans]
        seconds["student labels"] = time.perf_counter() - started
        del stack  # the maps, before their folder goes

    summary = ProjectSummary(
        images=tuple(images),
        teacher_score=validated(teacher),
        student_score=validated(student),
        quality_spearman=math.nan if quality.report is None else quality.report.spearman,
        tau=float(config.quality.tau),
        strategy=config.strategy,
        pseudo_slices=len(accepted),
        pseudo_slices_capped=capped,
        stage_seconds=seconds,
        device=device_text(torch_device),
        files={DESCRIPTIONS[k]: p.name for k, p in common.items() if k in DESCRIPTIONS},
    )
    write_project_report(common["report"], summary)
    try:
        project.save(common["project"])
    except ValueError:  # a project of in-memory arrays (napari's layers) has no file to name
        common.pop("project")
    logger.info("project run done in %.0f s: %s", sum(seconds.values()), common["report"])
    return ProjectResult(Path(out_dir), common, per_image, summary, selection, teacher, student)
