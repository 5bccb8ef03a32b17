"""``run --strategy mixed|mutual``: the weak-label runs of :mod:`napari_distill.core.pipeline_weak`.

``run`` keeps method 1's path for ``kd``; these strategies have no quality review, so their
run goes from the annotations to ``teacher_labels.tif`` and ``student_labels.tif`` directly.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from napari_distill.cli._base import UserError, load_labels

log = logging.getLogger("napari_distill")


def add_weak_arguments(p: argparse.ArgumentParser) -> None:
    """``--strategy``, ``--weak-labels`` and ``--noise-rate`` of ``run``."""
    from napari_distill.core.strategies import STRATEGIES, MutualConfig

    p.add_argument(
        "--strategy",
        default="kd",
        choices=[*sorted(STRATEGIES), "supervised", "mean-teacher"],
        help="kd: a few fully painted slices (teacher, quality review, student; default); "
        "mixed: full masks on some slices and --weak-labels on others; mutual: masks painted "
        "coarsely or with mistakes (docs/strategies.md); with --cells: supervised (default) "
        "or mean-teacher (docs/cells.md)",
    )
    p.add_argument(
        "--weak-labels",
        metavar="FILE",
        help="mixed: scribbles as a labels TIFF (0 = unknown, background painted as 255), "
        "points as a CSV with columns slice,y,x,class (class 0 = background), or slice tags "
        "as a CSV with columns slice,classes (the classes a slice contains, separated by "
        "spaces or semicolons; the others are absent)",
    )
    p.add_argument(
        "--noise-rate",
        type=float,
        metavar="R",
        help="mutual: about what share of the painted pixels is wrong (default "
        f"{MutualConfig.noise_rate}, for when you do not know)",
    )


def check_weak_arguments(args: argparse.Namespace) -> None:
    """Refuse flags that the chosen strategy would ignore."""
    if args.weak_labels and args.strategy != "mixed":
        raise UserError("--weak-labels is for --strategy mixed")
    if args.strategy == "mixed" and not args.weak_labels:
        raise UserError(
            "--strategy mixed needs --weak-labels (scribbles TIFF, points CSV or tags CSV)"
        )
    if args.noise_rate is not None and args.strategy != "mutual":
        raise UserError("--noise-rate is for --strategy mutual")


def _weak_inputs(path: str | None) -> dict:
    """``weak_labels``, ``points`` or ``tags`` from ``--weak-labels``: a CSV is tags when its
    header names ``slice`` and ``classes``, else points."""
    if path is None:
        return {}
    if Path(path).suffix.lower() == ".csv":
        from napari_distill.core.io import ReadError, read_points_csv, read_tags_csv, weak_csv_kind

        try:
            if weak_csv_kind(path) == "tags":
                return {"tags": read_tags_csv(path)}
            return {"points": read_points_csv(path)}
        except ReadError as error:
            raise UserError(str(error)) from error
    return {"weak_labels": load_labels(path)}


def run_weak(args: argparse.Namespace, pipeline_config, inputs) -> None:
    """Run ``mixed`` or ``mutual`` with the settings of ``run`` (model, steps, seed, clean-up)."""
    from napari_distill.cli.distill import drive_pipeline
    from napari_distill.core.pipeline_weak import WeakPipelineConfig, run_weak_pipeline
    from napari_distill.core.strategies import get_strategy

    image, labels, class_names, scale, rgb = inputs
    weak = _weak_inputs(args.weak_labels)
    strategy_config = get_strategy(args.strategy).default_config()
    try:
        if args.noise_rate is not None:
            strategy_config = dataclasses.replace(strategy_config, noise_rate=args.noise_rate)
        config = WeakPipelineConfig(
            strategy=args.strategy,
            strategy_config=strategy_config,
            model=pipeline_config.model,
            teacher=pipeline_config.teacher,
            student=pipeline_config.student,
            predict=pipeline_config.predict,
            cleanup=pipeline_config.cleanup,
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    records = run_weak_pipeline(
        image, labels, args.out_dir, config=config, **weak,
        device=args.device, overwrite=args.overwrite, class_names=class_names, scale=scale,
        rgb=rgb,
    )  # fmt: skip
    result = drive_pipeline(records, quiet=args.quiet)
    scores = ", ".join(
        f"{name} Dice {value:.3f}" for name, value in result.scores.items() if value is not None
    )
    log.info("%s: %s (validation slices): see %s", args.strategy, scores or "no validation",
             result.files["report"])  # fmt: skip
