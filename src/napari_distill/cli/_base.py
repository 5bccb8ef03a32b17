"""What every ``napari-distill`` subcommand shares: registration, progress bars, checks.

Each command is data: its help, how it adds arguments, and what it runs. Command modules
(:mod:`.engine`, :mod:`.distill`) register into :data:`COMMANDS` when imported.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from napari_distill.core.config import VIEW_AXES

log = logging.getLogger("napari_distill")
R = TypeVar("R")


class UserError(ValueError):
    """A mistake in what the user asked for; printed as one line."""


@dataclass(frozen=True)
class Command:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], None]
    uses_device: bool = True


COMMANDS: dict[str, Command] = {}


def command(
    name: str,
    help: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    uses_device: bool = True,
) -> Callable[[Callable[[argparse.Namespace], None]], Callable[[argparse.Namespace], None]]:
    """Register the decorated function as subcommand ``name`` of the command line."""

    def register(run: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], None]:
        COMMANDS[name] = Command(help, add_arguments, run, uses_device)
        return run

    return register


def drive(records: Generator[Any, None, R], *, desc: str, quiet: bool, unit: str = "step") -> R:
    """Exhaust a progress generator, drawing a tqdm bar; return the generator's result.

    Records carry ``step``/``total_steps`` (training) or ``done``/``total`` (prediction).
    """
    from tqdm import tqdm

    from napari_distill.core.progress import run_to_completion

    if quiet:
        return run_to_completion(records)
    with tqdm(desc=desc, unit=unit, dynamic_ncols=True) as bar:

        def draw(record: Any) -> None:
            done = getattr(record, "step", getattr(record, "done", None))
            total = getattr(record, "total_steps", getattr(record, "total", None))
            if total is not None and bar.total != total:
                bar.total = total
            if done is not None:
                bar.n = done
            postfix = {
                key: f"{value:.4f}"
                for key in ("loss", "val_score", "best_score")
                if (value := getattr(record, key, None)) is not None
            }
            if postfix:
                bar.set_postfix(postfix, refresh=False)
            bar.refresh()

        return run_to_completion(records, draw)


def add_teachers_argument(p: argparse.ArgumentParser) -> None:
    """``--teachers N`` and ``--views``: a teacher ensemble (``ModelConfig.members`` and
    ``ModelConfig.views``; read them back with :func:`ensemble_settings`)."""
    p.add_argument(
        "--teachers",
        type=int,
        default=None,
        metavar="N",
        help="train N teachers side by side (each from its own start, holding out its own "
        "validation slices where it can) and predict with the mean of their probabilities: "
        "N times the training and prediction time, steadier when one teacher misses an organ "
        "by the luck of its training (default: 1, or 3 with --views or planned views)",
    )
    p.add_argument(
        "--views",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="for a volume (a CT stack, not a stack of separate fields): the teachers slice it "
        "along its three axes in turn; those across the slices see each painted slice "
        "edge-on, as painted rows, and learn how the organs continue between painted slices; "
        "the prediction is the mean of all three views (needs at least 3 teachers; default: "
        "planned from the data, off with --no-plan; one image only, not with --images)",
    )


def ensemble_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``members`` and ``views`` of :class:`ModelConfig` from ``--teachers`` and ``--views``
    (not given: no views)."""
    views = bool(args.views)
    default = VIEW_AXES if views else 1
    return {"members": default if args.teachers is None else args.teachers, "views": views}


def add_plan_argument(p: argparse.ArgumentParser) -> None:
    """``--no-plan``: the fixed defaults instead of the teacher's plan from the data."""
    p.add_argument(
        "--no-plan",
        dest="plan",
        action="store_false",
        help="use the fixed defaults instead of planning the teacher from the data (by "
        "default its working scale, views, validation split, intensity clipping and batch "
        "are chosen from the slices, the painted structures and the voxel spacing, each "
        "decision logged with its reason; any of them given as an option is kept)",
    )


def given_settings(args: argparse.Namespace, **more: Any) -> dict[str, Any]:
    """The planned settings the user gave on the command line (``--downsample``,
    ``--teachers``, ``--views`` and ``more``), by their names in the plan."""
    given = {
        "downsample": args.downsample,
        "members": args.teachers,
        "views": args.views,
        **more,
    }
    if args.views and args.teachers is None:
        given["members"] = VIEW_AXES
    return {key: value for key, value in given.items() if value is not None}


def teacher_plan(
    args: argparse.Namespace,
    image: Any,
    labels: Any,
    image_data: Any,
    given: dict[str, Any],
    model_config: Any,
    train_config: Any,
    class_names: dict[int, str] | None = None,
) -> Any:
    """The teacher's plan from the data (None with ``--no-plan``): ``given`` kept."""
    if not args.plan:
        log.info("--no-plan: the teacher uses the fixed defaults and the options given")
        return None
    from napari_distill.core.device import select_device
    from napari_distill.core.training import measure, plan_teacher

    try:
        fingerprint = measure(
            image, labels, getattr(image_data, "scale", None), getattr(image_data, "rgb", None)
        )
        return plan_teacher(
            fingerprint, select_device(args.device), given=given,
            model_config=model_config, train_config=train_config, class_names=class_names,
        )  # fmt: skip
    except ValueError as error:
        raise UserError(str(error)) from error


def add_threads_argument(p: argparse.ArgumentParser) -> None:
    """``--threads N|auto``: torch's CPU threads for the command (read with
    :func:`threads_setting`; applied by :func:`napari_distill.core.device.cpu_threads`)."""
    p.add_argument(
        "--threads",
        default="auto",
        metavar="N",
        help="CPU threads torch computes with: auto (every core but one, at most one per "
        "physical core: 1 on a 2-core machine) or a number >= 1. More threads than free cores "
        "make every operation wait for a core (on 2 cores, 2 threads beside one other "
        "training took 1.6 times as long per step as 1); on a quiet 2-core machine, 2 are "
        "faster (default: auto)",
    )


def threads_setting(args: argparse.Namespace) -> int | None:
    """The ``--threads`` count (None: auto; also for commands without the option)."""
    from napari_distill.core.device import parse_cpu_threads

    try:
        return parse_cpu_threads(getattr(args, "threads", None))
    except ValueError as exc:
        raise UserError(f"--threads: {exc}") from exc


def add_downsample_argument(p: argparse.ArgumentParser) -> None:
    """``--downsample N``: the teacher's working scale (``ModelConfig.downsample``)."""
    p.add_argument(
        "--downsample",
        type=int,
        default=None,
        metavar="N",
        help="the network sees each slice reduced N times per side and its labels are scaled "
        "back up: for slices much larger than the structures need (the organs wider than about "
        "a third of a training patch), more context and N*N times less compute per slice; "
        "structures thinner than a few pixels at that scale are lost (default: planned from "
        "the painted structures, 1 (full resolution) with --no-plan; students keep their "
        "teacher's)",
    )


TIFF = (".tif", ".tiff")


def check_output(
    path: str | Path, overwrite: bool, suffixes: tuple[str, ...] | None = None
) -> Path:
    """Check an output file before any work: its folder exists and takes a file, it does not
    exist unless ``--overwrite``, its name ends in one of ``suffixes`` (any when None).

    Every command calls this for each file it will write before it reads its inputs, so a
    mistake costs no training (see :func:`napari_distill.core.io.check_output_path`).
    """
    from napari_distill.core.io import check_output_path

    return check_output_path(path, overwrite, suffixes)


def check_training_output(out: str, resume: str | None, overwrite: bool) -> Path:
    """``--out`` of a training command: an existing file is replaced only with
    ``--overwrite``, or when it is the ``--resume`` checkpoint itself (resuming in place)."""
    in_place = (
        resume is not None
        and Path(out).is_file()
        and Path(resume).is_file()
        and os.path.samefile(out, resume)
    )
    return check_output(out, overwrite or in_place)


def check_distinct(**outputs: str | None) -> None:
    """Refuse one file given for two outputs (``--out x.tif --instances x.tif``): the second
    write would fail, or replace the first, after all the work."""
    given = [(option, Path(path).resolve()) for option, path in outputs.items() if path]
    for index, (option, path) in enumerate(given):
        for other, other_path in given[index + 1 :]:
            if path == other_path:
                raise UserError(
                    f"--{option.replace('_', '-')} and --{other.replace('_', '-')} name the "
                    f"same file {path}; give each output its own file"
                )


def parse_slices(text: str | None, option: str = "--slices") -> list[int] | None:
    """``"3,7,9"`` or ``"0-4,9"`` -> a sorted list of slice indices (or class ids; ``option``
    names the flag in the error)."""
    if not text:
        return None
    indices: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                start, stop = (int(v) for v in part.split("-", 1))
                indices.update(range(start, stop + 1))
            elif part:
                indices.add(int(part))
        except ValueError as exc:
            raise UserError(f"{option}: {part!r} is not a number or a range like 3-7") from exc
    return sorted(indices)


def parse_class_ids(
    text: str | None, option: str, class_names: dict[int, str] | None = None
) -> tuple[int, ...]:
    """Class ids from ``"4,6"`` (empty: none), each checked against the model's classes
    (``{class id: name}``, background left out) when they are known."""
    ids = tuple(parse_slices(text, option) or ())
    if class_names is None:
        return ids
    unknown = [i for i in ids if i not in class_names]
    if unknown:
        known = ", ".join(f"{i} {name}" for i, name in class_names.items())
        raise UserError(
            f"{option}: class {', '.join(map(str, unknown))} is not one of the model's "
            f"classes ({known})"
        )
    return ids


def add_cleanup_arguments(p: argparse.ArgumentParser, labels: str = "the labels") -> None:
    """``--largest-component [IDS]`` and ``--min-size N``: the clean-up of ``labels`` (the
    help's words for what is cleaned; :func:`cleanup_config` reads the flags)."""
    p.add_argument(
        "--largest-component",
        nargs="?",
        const="",
        metavar="IDS",
        help=f"in {labels}, keep only the largest 3D piece of each class, or of the class ids "
        "given (e.g. 4,5,6: name only organs that are one body, not paired eyes or vertebrae)",
    )
    p.add_argument(
        "--min-size",
        type=int,
        default=0,
        help=f"in {labels}, remove pieces of any class smaller than this many voxels (pixels "
        "for a 2D image)",
    )


def cleanup_config(args: argparse.Namespace, class_names: dict[int, str] | None = None) -> Any:
    """The :class:`~napari_distill.core.config.InstanceConfig` (``"semantic"``) that
    :func:`add_cleanup_arguments`' flags ask for; class ids are checked against
    ``class_names`` (``{class id: name}``, background left out) when given."""
    from napari_distill.core.config import InstanceConfig

    if args.min_size < 0:
        raise UserError(f"--min-size must be >= 0, got {args.min_size}")
    return InstanceConfig(
        keep_largest_component=args.largest_component is not None,
        largest_component_classes=parse_class_ids(
            args.largest_component, "--largest-component", class_names
        ),
        min_size=args.min_size,
    )


def load_image(path: str) -> tuple[Any, Any]:
    """Read an image through the plugin's readers; returns (ImageData, array)."""
    from napari_distill.core.io import read_image

    data = read_image(path)
    return data, data.data


def load_labels(path: str) -> np.ndarray:
    from napari_distill.core.io import read_labels

    return np.asarray(read_labels(path).data)


def write_json(path: str | None, payload: dict[str, Any], overwrite: bool) -> None:
    """Write ``payload`` to ``path`` (checked again: it may have appeared meanwhile)."""
    if path:
        out = check_output(path, overwrite)
        out.write_text(json.dumps(payload, indent=2, default=float))
        log.info("wrote %s", out)
