"""``napari-distill run --images 'DIR/*.tif' [--labels-dir LDIR]`` or ``run --project FILE``:
method 1 over many images (:func:`~napari_distill.core.project.pipeline.run_project_pipeline`).

The images' predictions (the teacher's, then the student's) go through the batch code of
``predict --out-dir``: in this process by default, one image after another, or one task per
image on a Dask cluster with ``--workers N`` (a local one) or ``--scheduler ADDRESS`` (the
options, their help and their errors are :mod:`.batch`'s). The settings of a project file fill
the options not given on the command line; the run writes ``project.json`` to repeat it.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any

from ._base import UserError, given_settings
from .batch import (
    IN_PROCESS,
    add_cluster_arguments,
    check_cluster_arguments,
    cluster_client,
    worker_threads,
)

log = logging.getLogger("napari_distill")

# Options a project file's [settings] may set (their command-line names, dashes as "_").
PROJECT_SETTINGS = (
    "steps", "tau", "seed", "teachers", "downsample", "smaller_student", "larger_student",
    "noisy_student", "mirror", "plan", "largest_component", "min_size",
)  # fmt: skip
# Where the predictions run: a project file may say so too, but a run's project.json does not
# record it (the same run repeated elsewhere, or after the cluster is gone, runs as asked then).
PLACE_SETTINGS = ("scheduler", "workers")


def add_project_arguments(source: Any, p: argparse.ArgumentParser) -> None:
    """``--images`` and ``--project`` (in the group of ``--image``), and ``--labels-dir``."""
    source.add_argument(
        "--images",
        help="many images: a glob ('scans/*.tif'), a folder or a list file; one teacher from "
        "the painted slices of all, one student from all (with --labels-dir)",
    )
    source.add_argument(
        "--project", help="a project file (TOML or JSON: images, labels, settings) to run"
    )
    p.add_argument(
        "--labels-dir",
        help="with --images: labels files named as their image (<name>.tif or "
        "<name>_labels.tif); images without one are unlabelled",
    )
    add_cluster_arguments(p, when="--images or --project", default=IN_PROCESS)


def check_one_image_place(args: argparse.Namespace) -> None:
    """Refuse ``--scheduler`` / ``--workers`` for a run of one image (predicted here)."""
    if args.scheduler or args.workers is not None:
        raise UserError(
            "--scheduler and --workers go with --images or --project: a run of one image "
            "predicts it in this process"
        )


def _apply_settings(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """The project file's settings, where the command line left the option at its default."""
    from . import build_parser

    defaults = build_parser().parse_args(["run", "--images", "x", "--out-dir", "x"])
    known = PROJECT_SETTINGS + PLACE_SETTINGS
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise UserError(f"the project file's settings {unknown} are not known; use {list(known)}")
    for key, value in settings.items():
        if getattr(args, key, None) == getattr(defaults, key, None):
            setattr(args, key, value)


def run_project(args: argparse.Namespace) -> None:
    """The ``run`` command over a project."""
    from napari_distill.core.project.files import ProjectError, load_project, project_from_paths
    from napari_distill.core.project.pipeline import run_project_pipeline
    from napari_distill.core.project.stack import VIEWS_UNAVAILABLE

    from .distill import drive_pipeline, pipeline_config

    if args.strategy != "kd":
        raise UserError("--images / --project run strategy kd (method 1) only")
    if args.labels:
        raise UserError("--labels names one image's labels: with --images use --labels-dir")
    try:
        if args.project:
            if args.labels_dir:
                raise UserError("--labels-dir is given in the project file, not with --project")
            project = load_project(args.project)
            _apply_settings(args, dict(project.settings))
        else:
            settings = {k: getattr(args, k) for k in PROJECT_SETTINGS if hasattr(args, k)}
            project = project_from_paths(args.images, args.labels_dir, settings)
        project.check()
    except ProjectError as error:
        raise UserError(str(error)) from error
    if args.views:
        raise UserError(
            f"--views is for one image (--image): {VIEWS_UNAVAILABLE}. Run without --views."
        )
    log.info(
        "project: %d images, %d with labels (%s)",
        len(project.images),
        len(project.labelled),
        ", ".join(i.name for i in project.labelled),
    )
    check_cluster_arguments(args)
    config = pipeline_config(args)
    given = given_settings(args, steps=args.steps)
    # the cluster first: a scheduler that does not answer stops the run before it writes
    with cluster_client(args, local_by_default=False) as client:
        records = run_project_pipeline(
            project, args.out_dir, config=dataclasses.replace(config, plan=None),
            device=args.device, overwrite=args.overwrite,
            plan_given=given if args.plan else None, client=client,
            worker_threads=worker_threads(args),
        )  # fmt: skip
        result = drive_pipeline(records, quiet=args.quiet)
    s = result.summary
    log.info(
        "teacher Dice %s, student Dice %s, %d pseudo-labelled slices from %d images: see %s",
        "n/a" if s.teacher_score is None else f"{s.teacher_score:.3f}",
        "n/a" if s.student_score is None else f"{s.student_score:.3f}",
        s.pseudo_slices,
        sum(1 for i in s.images if i.accepted),
        result.files["report"],
    )
