"""Quality classifier commands (method 1): ``quality-fit`` and ``quality-score``."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from napari_distill.cli._base import (
    UserError,
    check_distinct,
    check_output,
    command,
    drive,
    load_image,
    load_labels,
)
from napari_distill.core.config import QualityConfig

log = logging.getLogger("napari_distill")

TEACHER_KINDS = ("teacher", "student")  # both make pseudo-labels a classifier can rate


def load_teacher(path: str, device: str = "cpu"):
    """The teacher checkpoint at ``path``; a one-line error for a file of another kind."""
    from napari_distill.core.models import CheckpointError, load_checkpoint, read_checkpoint

    try:
        kind = read_checkpoint(path, "cpu")["kind"]
    except CheckpointError as error:
        raise UserError(str(error)) from error
    if kind not in TEACHER_KINDS:
        raise UserError(f"{path} is a {kind} checkpoint, not a teacher")
    try:
        return load_checkpoint(path, device=device)[0]
    except CheckpointError as error:
        raise UserError(str(error)) from error


def _spearman_text(value: float) -> str:
    return "n/a (too few annotated slices held out)" if math.isnan(value) else f"{value:.3f}"


# ------------------------------------------------------------------------------ quality-fit
def _fit_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher checkpoint (.pt)")
    p.add_argument("--image", required=True, help="TIFF stack, 2D image or folder of slices")
    p.add_argument("--labels", required=True, help="labels with the annotated slices")
    p.add_argument("--out", required=True, help="quality checkpoint to write, e.g. quality.pt")
    p.add_argument("--steps", type=int, default=QualityConfig.steps, help="optimiser steps")
    p.add_argument(
        "--variants",
        type=int,
        default=QualityConfig.variants_per_slice,
        help="randomised pseudo-labels per annotated slice (dropout, perturbed input, noisy "
        "weights)",
    )
    p.add_argument("--input-size", type=int, default=QualityConfig.input_size, help="pixels")
    p.add_argument("--base-channels", type=int, default=QualityConfig.base_channels)
    p.add_argument(
        "--holdout-fraction",
        type=float,
        default=QualityConfig.holdout_fraction,
        help="annotated slices kept aside to measure the rank correlation",
    )
    p.add_argument("--per-class", action="store_true", help="also predict the IoU per class")


@command(
    "quality-fit",
    "Fit the quality classifier that predicts the IoU of the teacher's pseudo-labels.",
    add_arguments=_fit_arguments,
)
def quality_fit_command(args: argparse.Namespace) -> None:
    from napari_distill.core.quality import fit_quality, save_quality

    out = check_output(args.out, args.overwrite)
    teacher = load_teacher(args.teacher, "cpu")
    _, image = load_image(args.image)
    labels = load_labels(args.labels)
    try:
        config = QualityConfig(
            steps=args.steps,
            variants_per_slice=args.variants,
            input_size=args.input_size,
            base_channels=args.base_channels,
            holdout_fraction=args.holdout_fraction,
            per_class_head=args.per_class,
            seed=args.seed,
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    model = drive(
        fit_quality(teacher, image, labels, config=config, device=args.device),
        desc="quality",
        quiet=args.quiet,
    )
    save_quality(out, model)
    report = model.report
    spearman = float("nan") if report is None else report.spearman
    # The one number this command exists to report: printed even with --quiet.
    print(f"quality classifier Spearman (held-out slices): {_spearman_text(spearman)}")
    log.info("saved %s", out)


# ---------------------------------------------------------------------------- quality-score
def _score_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", required=True, help="teacher checkpoint (.pt)")
    p.add_argument("--quality", required=True, help="quality checkpoint from quality-fit")
    p.add_argument("--image", required=True, help="TIFF stack, 2D image or folder of slices")
    p.add_argument("--out", required=True, help="scores CSV to write")
    p.add_argument("--json", help="also write the scores and selection as JSON")
    p.add_argument(
        "--tau",
        type=float,
        default=QualityConfig.tau,
        help=f"accept slices scoring at least this (default {QualityConfig.tau})",
    )
    p.add_argument("--labels", help="labels: their annotated slices are marked, not accepted")


@command(
    "quality-score",
    "Score every slice's pseudo-label and select the slices scoring at least tau.",
    add_arguments=_score_arguments,
)
def quality_score_command(args: argparse.Namespace) -> None:
    from napari_distill.core.models import CheckpointError
    from napari_distill.core.preprocess import annotated_slices, as_stack
    from napari_distill.core.quality import load_quality, score_slices
    from napari_distill.core.report import LEAST_CONFIDENT_LISTED

    if not 0.0 <= args.tau <= 1.0:
        raise UserError(f"--tau must be between 0 and 1, got {args.tau}")
    check_distinct(out=args.out, json=args.json)
    out = check_output(args.out, args.overwrite)
    json_out = None if args.json is None else check_output(args.json, args.overwrite)
    teacher = load_teacher(args.teacher, "cpu")
    try:
        quality = load_quality(args.quality)
    except CheckpointError as error:
        raise UserError(str(error)) from error
    _, image = load_image(args.image)
    annotated: list[int] = []
    if args.labels:
        labels = load_labels(args.labels)
        shape = as_stack(image).shape[:3]
        if labels.shape[-2:] != shape[1:] or (labels.ndim == 3 and labels.shape[0] != shape[0]):
            raise UserError(
                f"--labels {args.labels} of shape {labels.shape} do not match the image's "
                f"slices {shape} (slices, height, width)"
            )
        annotated = annotated_slices(labels).tolist()
    scores = drive(
        score_slices(quality, image, teacher, device=args.device),
        desc="quality-score",
        quiet=args.quiet,
        unit="slice",
    )
    selection = scores.selection(args.tau, annotated)
    selection.save_csv(out)
    if json_out is not None:
        selection.save_json(json_out)
    scored = [s for s in scores.quality if not math.isnan(s)]
    log.info(
        "%d of %d slices accepted at tau=%.2f (%d annotated); wrote %s%s",
        len(selection.accepted),
        len(scored),
        args.tau,
        len(annotated),
        out,
        "" if json_out is None else f" and {Path(json_out)}",
    )
    unsure = selection.worst_first("confidence")[:LEAST_CONFIDENT_LISTED]
    if unsure:
        log.info(
            "the teacher is least sure of slices %s (look at them; the 'confidence' column)",
            ", ".join(str(i) for i in unsure),
        )
