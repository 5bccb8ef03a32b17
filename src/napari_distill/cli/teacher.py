"""The ``train-teacher`` command: a teacher from the painted slices, planned from the data
unless ``--no-plan`` (:mod:`napari_distill.core.training.plan`)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

import numpy as np

from napari_distill.cli._base import (
    UserError,
    add_downsample_argument,
    add_plan_argument,
    add_teachers_argument,
    check_training_output,
    command,
    drive,
    ensemble_settings,
    given_settings,
    load_image,
    load_labels,
    teacher_plan,
)
from napari_distill.core.config import ModelConfig, TrainConfig

log = logging.getLogger("napari_distill")


def parse_class_names(text: str | None) -> dict[int, str] | None:
    """``"1=vertebrae,2=eye"`` -> ``{1: "vertebrae", 2: "eye"}``."""
    if not text:
        return None
    names: dict[int, str] = {}
    for part in text.split(","):
        key, sep, name = part.partition("=")
        if not sep or not key.strip().isdigit() or not name.strip():
            raise UserError(f"--class-names: {part!r} is not of the form ID=NAME")
        names[int(key)] = name.strip()
    return names


def steps_for_epochs(epochs: float, labels: np.ndarray, batch_size: int, patch_size: int) -> int:
    """Steps that show the network every annotated pixel ``epochs`` times (on average)."""
    from napari_distill.core.preprocess import annotated_slices, labels_as_stack

    stack = labels_as_stack(labels)
    annotated_pixels = len(annotated_slices(stack)) * stack.shape[1] * stack.shape[2]
    per_step = batch_size * min(patch_size, stack.shape[1]) * min(patch_size, stack.shape[2])
    return max(1, int(np.ceil(epochs * annotated_pixels / per_step)))


# ------------------------------------------------------------------------- train-teacher
def _train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="TIFF stack, 2D image or folder of slices")
    p.add_argument("--labels", required=True, help="labels with a few annotated slices")
    p.add_argument("--out", required=True, help="checkpoint to write, e.g. teacher.pt")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, help="optimiser steps (default: chosen from data)")
    budget.add_argument("--epochs", type=float, help="passes over the annotated pixels")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget")
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"patches per step (default: planned for the device, {TrainConfig.batch_size} on "
        "a CPU or with --no-plan)",
    )
    p.add_argument(
        "--patch-size",
        type=int,
        help="pixels at the network's scale (times --downsample in the image's pixels; "
        f"default {TrainConfig.patch_size})",
    )
    p.add_argument("--learning-rate", type=float, default=TrainConfig.learning_rate)
    p.add_argument("--base-channels", type=int, default=ModelConfig.base_channels)
    add_teachers_argument(p)
    add_downsample_argument(p)
    p.add_argument("--depth", type=int, default=ModelConfig.depth, help="U-Net levels")
    p.add_argument("--dropout", type=float, default=ModelConfig.dropout)
    p.add_argument(
        "--context-slices",
        type=int,
        default=ModelConfig.context_slices,
        help="neighbouring slices on each side as extra channels (2.5D); 0 = 2D",
    )
    p.add_argument(
        "--deep-supervision",
        action=argparse.BooleanOptionalAction,
        default=ModelConfig.deep_supervision,
        help="also train a classification head on each intermediate decoder level",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="share of the painted slices held out (default: planned: 0 when that would hold "
        f"out fewer than 3; {TrainConfig.validation_fraction} with --no-plan)",
    )
    add_plan_argument(p)
    p.add_argument("--patience", type=int, default=TrainConfig.patience, help="validations")
    p.add_argument(
        "--keep",
        choices=("final", "best"),
        default="final" if TrainConfig.keep_final else "best",
        help="weights kept when the schedule completes: the final ones, or the step that "
        "scored best on the validation slices (a run stopped early keeps its best)",
    )
    p.add_argument("--elastic", action="store_true", help="add elastic deformations")
    p.add_argument("--no-augment", action="store_true", help="train without augmentation")
    p.add_argument("--class-names", help="names stored with the model, e.g. 1=liver,2=gut")
    p.add_argument(
        "--resume",
        help="continue a checkpoint written by an earlier run (its settings are kept; --steps "
        "sets the new total, e.g. to train a finished run longer); --out may be the same file",
    )


@command(
    "train-teacher",
    "Train a teacher on the annotated slices of a labels image.",
    add_arguments=_train_arguments,
)
def train_teacher_command(args: argparse.Namespace) -> None:
    from napari_distill.core.training import train_teacher

    out = check_training_output(args.out, args.resume, args.overwrite)
    image_data, image = load_image(args.image)
    labels = load_labels(args.labels)
    class_names = parse_class_names(args.class_names)
    model_config = ModelConfig(
        base_channels=args.base_channels,
        depth=args.depth,
        dropout=args.dropout,
        context_slices=args.context_slices,
        deep_supervision=args.deep_supervision,
        **ensemble_settings(args),
        downsample=args.downsample or ModelConfig.downsample,
    )
    given_train = {
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "validation_fraction": args.validation_fraction,
        "steps": args.steps,
    }
    train_config = TrainConfig(
        steps=args.steps,
        **{k: v for k, v in given_train.items() if k != "steps" and v is not None},
        learning_rate=args.learning_rate,
        patience=args.patience,
        keep_final=args.keep == "final",
        augment=not args.no_augment,
        elastic=args.elastic,
        seed=args.seed,
        max_minutes=args.max_minutes,
    )
    plan = None
    if args.resume is None:
        given = given_settings(args, **given_train)
        plan = teacher_plan(args, image, labels, image_data, given, model_config, train_config)
        if plan is not None:
            model_config, train_config = plan.apply(model_config, train_config)
    steps = args.steps
    if args.epochs is not None:
        steps = steps_for_epochs(
            args.epochs,
            labels,
            train_config.batch_size,
            model_config.image_pixels(train_config.patch_size),
        )
        train_config = dataclasses.replace(train_config, steps=steps)
        if plan is not None:  # the epochs' steps are the user's: planned again with them
            given = given_settings(args, **{**given_train, "steps": steps})
            plan = teacher_plan(args, image, labels, image_data, given, model_config, train_config)
    run = train_teacher(
        image,
        labels,
        model_config=model_config,
        train_config=train_config,
        device=args.device,
        class_names=class_names,
        resume_from=args.resume,
        rgb=image_data.rgb,
        plan=plan,
    )
    if args.resume and steps is not None:  # a resumed run keeps its total unless told
        run.set_total_steps(steps, args.resume)
    try:
        drive(run.steps(), desc="teacher", quiet=args.quiet)
    except KeyboardInterrupt:
        run.save(out)
        log.info("stopped at step %d; the best model so far is in %s", run.step, out)
        raise
    run.save(out)
    kept = "" if run.best_score is None else f" (validation Dice {run.best_score:.3f})"
    log.info(
        "teacher: %d steps, %s; kept the weights of step %s%s; saved %s",
        run.step,
        run.stop_reason,
        run.best_step if run.best_step is not None else run.step,
        kept,
        out,
    )
    from napari_distill.cli.comparison import log_comparison

    log_comparison(run.best_bundle(), image, labels, args.device, quiet=args.quiet)
