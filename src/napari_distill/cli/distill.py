"""Distillation commands: ``distill`` (a student from a teacher) and ``run`` (the whole method)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from napari_distill.cli._base import (
    UserError,
    add_cleanup_arguments,
    add_downsample_argument,
    add_plan_argument,
    add_teachers_argument,
    check_training_output,
    cleanup_config,
    command,
    drive,
    ensemble_settings,
    given_settings,
    load_image,
    load_labels,
    teacher_plan,
)
from napari_distill.cli.cells import add_cell_arguments, run_cells, wants_cells
from napari_distill.cli.project import add_project_arguments, check_one_image_place, run_project
from napari_distill.cli.weak import add_weak_arguments, check_weak_arguments, run_weak
from napari_distill.core.config import KDConfig, QualityConfig, TrainConfig

if TYPE_CHECKING:
    from napari_distill.core.pipeline import PipelineConfig

log = logging.getLogger("napari_distill")

SAMPLES = ("medaka",)


def _strategy_arguments(p: argparse.ArgumentParser) -> None:
    from napari_distill.core.strategies import STRATEGIES

    p.add_argument(
        "--strategy", default="kd", choices=sorted(STRATEGIES), help="student strategy (kd)"
    )
    p.add_argument(
        "--temperature", type=float, default=KDConfig.temperature, help="KD temperature T"
    )
    p.add_argument(
        "--lambda-kd", type=float, default=KDConfig.lambda_kd, help="weight of the KD term"
    )
    p.add_argument(
        "--from-scratch", action="store_true", help="do not start from the teacher's weights"
    )
    p.add_argument(
        "--smaller-student",
        action="store_true",
        help="half the channels, one level fewer (always trained from scratch)",
    )
    add_student_recipe_arguments(p)
    p.add_argument(
        "--kd-on-annotated",
        action="store_true",
        help="apply the KD term on the annotated slices too (default: accepted slices only)",
    )
    p.add_argument(
        "--annotated-share",
        type=float,
        default=KDConfig.annotated_share,
        help="share of the training patches drawn from the annotated slices, the rest from "
        "the accepted ones (default %(default)s)",
    )
    p.add_argument("--steps", type=int, help="optimiser steps (default: chosen from the data)")


def add_student_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """``--larger-student`` and ``--noisy-student`` (KDConfig's self-training options)."""
    p.add_argument(
        "--larger-student",
        action="store_true",
        help="twice the teacher's channels, about 4x the compute (always trained from scratch)",
    )
    p.add_argument(
        "--noisy-student",
        action="store_true",
        help="strong intensity noise and more dropout for the student only; the teacher's "
        "targets come from the clean patches",
    )


def _from_scratch(args: argparse.Namespace) -> bool:
    """Whether the student is trained from scratch (a smaller or larger one always is)."""
    for flag in ("smaller_student", "larger_student"):
        if getattr(args, flag) and not getattr(args, "from_scratch", False):
            log.info("--%s: the student is trained from scratch", flag.replace("_", "-"))
    return bool(getattr(args, "from_scratch", False) or args.smaller_student or args.larger_student)


def _strategy_config(args: argparse.Namespace) -> KDConfig:
    if args.strategy != "kd":
        raise UserError(
            f"distill trains kd students; for strategy {args.strategy!r} use "
            f"'napari-distill run --strategy {args.strategy}'"
        )
    try:
        return KDConfig(
            temperature=args.temperature,
            lambda_kd=args.lambda_kd,
            init_from_teacher=not _from_scratch(args),
            smaller_student=args.smaller_student,
            larger_student=args.larger_student,
            noisy_student=args.noisy_student,
            kd_on_annotated=args.kd_on_annotated,
            annotated_share=args.annotated_share,
        )
    except ValueError as error:
        raise UserError(str(error)) from error


def _steps(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise UserError(f"--steps must be at least 1, got {value}")
    return value


# ------------------------------------------------------------------------------ distill
def _distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher checkpoint (train-teacher --out)")
    p.add_argument("--image", required=True, help="the image the teacher was trained on")
    p.add_argument("--labels", required=True, help="its labels (the annotated slices)")
    p.add_argument(
        "--scores",
        help="scores.csv / scores.json from quality-score (or a run): only its accepted slices "
        "are learned from; without it, every unannotated slice is",
    )
    p.add_argument(
        "--tau", type=float, help="re-select the slices of --scores at this threshold instead"
    )
    _strategy_arguments(p)
    p.add_argument(
        "--resume",
        help="continue a student checkpoint written by an earlier run (--steps sets the new "
        "total); --out may be the same file",
    )
    p.add_argument("--out", required=True, help="student checkpoint to write, e.g. student.pt")


def _accepted_slices(args: argparse.Namespace, labels, n_slices: int) -> list[int]:
    from napari_distill.core.preprocess import annotated_slices

    if args.scores is None:
        if args.tau is not None:
            raise UserError("--tau needs --scores (the per-slice scores to threshold)")
        log.warning("no --scores: the student learns from every unannotated slice (no filter)")
        return list(range(n_slices))
    from napari_distill.core.quality import Selection

    path = Path(args.scores)
    if not path.is_file():
        raise UserError(f"--scores {path} does not exist")
    selection = Selection.load(path, tau=args.tau)  # --tau re-derives the automatic decisions
    outside = [i for i in selection.scores if not 0 <= i < n_slices]
    if outside:
        raise UserError(
            f"--scores {path} rates slices {outside[:5]} outside the image's {n_slices} slices"
        )
    painted = set(annotated_slices(labels).tolist())
    return [i for i in selection.accepted_slices if i not in painted]


@command(
    "distill",
    "Train a student from a teacher on annotated and accepted slices.",
    add_arguments=_distill_arguments,
)
def run_distill(args: argparse.Namespace) -> None:
    from napari_distill.core.models import load_checkpoint
    from napari_distill.core.strategies import get_strategy

    out = check_training_output(args.out, args.resume, args.overwrite)
    teacher, _ = load_checkpoint(args.teacher, kind="teacher")
    image_data, image = load_image(args.image)
    labels = load_labels(args.labels)
    n_slices = labels.shape[0] if labels.ndim == 3 else 1
    accepted = _accepted_slices(args, labels, n_slices)
    base = teacher.train_config or TrainConfig()
    train_config = dataclasses.replace(base, steps=_steps(args.steps), seed=args.seed)
    run = get_strategy(args.strategy).build(
        teacher, image, labels, accepted,
        train_config=train_config, strategy_config=_strategy_config(args),
        device=args.device, resume_from=args.resume, rgb=image_data.rgb,
    )  # fmt: skip
    if args.resume and args.steps is not None:  # a resumed run keeps its total unless told
        run.set_total_steps(args.steps, args.resume)
    drive(run.steps(), desc=f"student ({args.strategy})", quiet=args.quiet)
    run.save(out)
    score = "n/a" if run.best_score is None else f"{run.best_score:.4f}"
    log.info("student: validation Dice %s after %d steps; saved %s", score, run.step, out)


# ------------------------------------------------------------------------------ run
def _run_arguments(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="TIFF stack, 2D image or folder of slices")
    source.add_argument(
        "--sample", choices=SAMPLES, help="the bundled synthetic sample (with its labels)"
    )
    add_project_arguments(source, p)  # --images, --project, --labels-dir: cli/project.py
    p.add_argument("--labels", help="labels with a few annotated slices (with --image)")
    p.add_argument("--out-dir", required=True, help="folder for checkpoints, labels and report")
    p.add_argument(
        "--steps",
        type=int,
        help="fixed steps for teacher, quality classifier and student, for quick runs "
        "(default: chosen from the data, with early stopping)",
    )
    p.add_argument(
        "--tau", type=float, default=QualityConfig.tau, help="accept slices scoring >= tau"
    )
    add_teachers_argument(p)
    add_downsample_argument(p)
    add_plan_argument(p)
    add_cleanup_arguments(p, "student_labels.tif")
    p.add_argument(
        "--smaller-student",
        action="store_true",
        help="a cheaper student (half the channels, one level fewer), trained from scratch",
    )
    add_student_recipe_arguments(p)
    p.add_argument(
        "--mirror",
        action="store_true",
        help="predict every slice and its three mirror images, averaged (4x slower "
        "predictions, slightly better pseudo-labels and labels)",
    )
    add_weak_arguments(p)
    add_cell_arguments(p)


def _load_run_inputs(args: argparse.Namespace):
    """(image, labels, class_names, scale, rgb) from the files or the sample (the voxel size
    from the file's metadata, or the sample's)."""
    if args.sample is not None:
        if args.labels:
            raise UserError("--labels is not used with --sample (the sample has its own)")
        from napari_distill.core.samples import make_medaka

        log.info("making the synthetic Medaka micro-CT sample")
        sample = make_medaka()
        return sample.image, sample.labels_sparse, sample.class_names, sample.scale, False
    if not args.labels:
        raise UserError("--image needs --labels (the annotated slices)")
    image_data, image = load_image(args.image)
    labels = load_labels(args.labels)
    scale = getattr(image_data, "scale", None)
    return image, labels, None, scale, image_data.rgb


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    """The :class:`PipelineConfig` the ``run`` arguments ask for."""
    from napari_distill.core.pipeline import PipelineConfig

    base = PipelineConfig()
    try:
        return dataclasses.replace(
            base,
            model=dataclasses.replace(
                base.model,
                downsample=args.downsample or base.model.downsample,
                **ensemble_settings(args),
            ),
            teacher=dataclasses.replace(base.teacher, seed=args.seed),
            student=dataclasses.replace(base.student, seed=args.seed),
            quality=dataclasses.replace(base.quality, tau=args.tau, seed=args.seed),
            strategy_config=KDConfig(
                init_from_teacher=not _from_scratch(args),
                smaller_student=args.smaller_student,
                larger_student=args.larger_student,
                noisy_student=args.noisy_student,
            ),
            predict=dataclasses.replace(base.predict, mirror=args.mirror),
            cleanup=cleanup_config(args),  # classes checked against the painted ones
        ).with_steps(_steps(args.steps))
    except ValueError as error:
        raise UserError(str(error)) from error


@command(
    "run",
    "Teacher, quality classifier, student and labels in one go (method 1; --strategy mixed or "
    "mutual: methods 3 and 4, without quality review).",
    add_arguments=_run_arguments,
)
def run_all(args: argparse.Namespace) -> None:
    from napari_distill.core.pipeline import check_out_dir, run_pipeline

    if args.images or args.project:  # many images: cli/project.py
        return run_project(args)
    check_one_image_place(args)
    if wants_cells(args):  # Pap smear cells: core.pipeline_cells
        return run_cells(args)
    check_weak_arguments(args)
    if args.strategy != "kd":  # no quality review: core.pipeline_weak
        from napari_distill.core.pipeline_weak import check_weak_out_dir

        check_weak_out_dir(args.out_dir, args.overwrite)
        return run_weak(args, pipeline_config(args), _load_run_inputs(args))
    check_out_dir(args.out_dir, args.overwrite)  # fail before the slow part
    image, labels, class_names, scale, rgb = _load_run_inputs(args)
    config = pipeline_config(args)
    source = argparse.Namespace(scale=scale, rgb=rgb)
    given = given_settings(args, steps=args.steps)
    plan = teacher_plan(
        args, image, labels, source, given, config.model, config.teacher, class_names
    )
    config = dataclasses.replace(config, plan=plan)
    records = run_pipeline(
        image, labels, args.out_dir, config=config, device=args.device,
        overwrite=args.overwrite, class_names=class_names, scale=scale, rgb=rgb,
    )  # fmt: skip
    result = drive_pipeline(records, quiet=args.quiet)
    s = result.summary
    log.info(
        "teacher Dice %s, quality Spearman %.3f, %d slices accepted, student Dice %s (Dice on "
        "%d validation slice(s)): see %s",
        "n/a" if s.teacher_score is None else f"{s.teacher_score:.3f}",
        s.quality_spearman,
        len(s.accepted),
        "n/a" if s.student_score is None else f"{s.student_score:.3f}",
        len(s.validation),
        result.files["report"],
    )


def drive_pipeline(records, *, quiet: bool):
    """Exhaust :func:`run_pipeline`'s records, one tqdm bar per stage and kind of record."""
    from tqdm import tqdm

    bar = None
    key = None
    try:
        while True:
            try:
                progress = next(records)
            except StopIteration as stop:
                return stop.value
            if quiet:
                continue
            record = progress.record
            if (progress.stage_index, type(record)) != key:
                if bar is not None:
                    bar.close()
                key = (progress.stage_index, type(record))
                desc = f"[{progress.stage_index + 1}/{progress.n_stages}] {progress.stage}"
                bar = tqdm(desc=desc, dynamic_ncols=True)
            done = getattr(record, "step", getattr(record, "done", None))
            total = getattr(record, "total_steps", getattr(record, "total", None))
            if total is not None and bar.total != total:
                bar.total = total
            if done is not None:
                bar.n = done
            value = getattr(record, "loss", None)
            if value is not None:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()
