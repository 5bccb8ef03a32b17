"""Pap smear cells on the command line: ``run --cells --nuclei``, and the cell files of
``predict`` and ``evaluate`` (:mod:`napari_distill.core.pipeline_cells`).

``run --image FIELDS.tif --cells CELLS.tif --nuclei NUCLEI.tif --out-dir D
[--strategy supervised|mean-teacher] [--seed S]``: FIELDS ``(N, H, W)`` grey or ``(N, H, W, 3)``
RGB, CELLS ``(N, P, H, W)`` planes, NUCLEI ``(N, H, W)`` instances; a field without a painted
cell is unannotated. ``run`` hands over to this module when ``--cells`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from napari_distill.cli._base import UserError, check_output, load_image, load_labels

log = logging.getLogger("napari_distill")

CELL_STRATEGY_CHOICES = ("supervised", "mean-teacher")


def add_cell_arguments(p: argparse.ArgumentParser) -> None:
    """``--cells`` and ``--nuclei`` of ``run``."""
    p.add_argument(
        "--cells",
        metavar="CELLS.tif",
        help="Pap smear: painted cells as planes (N, P, H, W), overlapping cells in different "
        "planes (docs/cells.md); with --nuclei; --strategy supervised (default) or mean-teacher",
    )
    p.add_argument("--nuclei", metavar="NUCLEI.tif", help="painted nuclei (N, H, W), with --cells")


def wants_cells(args: argparse.Namespace) -> bool:
    """Whether ``run`` is a cell run; refuse half of one."""
    cells, nuclei = getattr(args, "cells", None), getattr(args, "nuclei", None)
    if args.strategy in CELL_STRATEGY_CHOICES and not cells:
        raise UserError(f"--strategy {args.strategy} is for Pap smear cells: give --cells")
    if bool(cells) != bool(nuclei):
        raise UserError("--cells and --nuclei go together")
    return bool(cells)


def _read_planes(path: str) -> np.ndarray:
    from napari_distill.core.io import ReadError, read_cell_planes

    try:
        return read_cell_planes(path)
    except ReadError as error:
        raise UserError(str(error)) from error


def run_cells(args: argparse.Namespace) -> None:
    """The cell run: teacher, strategy's student, files and report."""
    from napari_distill.cli.distill import drive_pipeline
    from napari_distill.core.pipeline_cells import (
        CellPipelineConfig,
        check_cell_out_dir,
        run_cell_pipeline,
    )

    if args.sample or not args.image:
        raise UserError("--cells needs --image (the fields)")
    if args.labels:
        raise UserError("--labels is not used with --cells (cells and nuclei are the labels)")
    strategy = "supervised" if args.strategy == "kd" else args.strategy
    if strategy not in CELL_STRATEGY_CHOICES:
        raise UserError(f"--cells takes --strategy supervised or mean-teacher, not {strategy}")
    check_cell_out_dir(args.out_dir, args.overwrite)
    image_data, image = load_image(args.image)
    cells = _read_planes(args.cells)
    nuclei = load_labels(args.nuclei)
    if nuclei.ndim == 2:
        nuclei = nuclei[None]
    image, rgb = _fields(np.asarray(image), image_data.rgb, cells.shape[0])
    base = CellPipelineConfig()
    try:
        config = dataclasses.replace(
            base,
            strategy=strategy,
            teacher=dataclasses.replace(base.teacher, seed=args.seed, **_steps(args)),
            student=dataclasses.replace(base.student, seed=args.seed, **_steps(args)),
        )
    except ValueError as error:
        raise UserError(str(error)) from error
    records = run_cell_pipeline(
        image, cells, nuclei, args.out_dir, config=config, rgb=rgb,
        overwrite=args.overwrite, device=_device(args.device),
    )  # fmt: skip
    try:
        result = drive_pipeline(records, quiet=args.quiet)
    except ValueError as error:
        raise UserError(str(error)) from error
    log.info("%s: %d annotated field(s); cells in %s, nuclei in %s; see %s", strategy,
             len(result.annotated), result.files["cells"], result.files["nuclei"],
             result.files["report"])  # fmt: skip


def _fields(image: np.ndarray, rgb: bool, n_fields: int) -> tuple[np.ndarray, bool]:
    """``(N, H, W[, 3])`` fields. A grey stack of exactly three fields looks like one RGB image
    to the reader; the cells file, which has three fields, settles it."""
    if rgb and image.ndim == 3 and n_fields == 3:
        return np.moveaxis(image, -1, 0), False
    if image.ndim == (3 if rgb else 2):
        image = image[None]
    return image, rgb


def _steps(args: argparse.Namespace) -> dict:
    return {} if getattr(args, "steps", None) is None else {"steps": args.steps}


def _device(name: str) -> str:
    from napari_distill.core.device import select_device

    return str(select_device(name))


def is_cell_model(path: str) -> bool:
    """Whether a checkpoint holds a cell model (``predict`` then writes planes)."""
    import torch

    from napari_distill.core.models.cells import CELL_CHECKPOINT_KIND

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001  (any unreadable file: the usual loader reports it)
        return False
    return isinstance(payload, dict) and payload.get("kind") == CELL_CHECKPOINT_KIND


def predict_cells_command(args: argparse.Namespace) -> None:
    """``predict --model cells.pt --image FIELDS.tif --out CELLS.tif [--nuclei NUCLEI.tif]``."""
    from napari_distill.cli._base import drive
    from napari_distill.core.inference.cells import predict_cells
    from napari_distill.core.io import write_cell_planes, write_labels
    from napari_distill.core.models.cells import load_cell_model

    out = check_output(args.out, args.overwrite, (".tif", ".tiff"))
    nuclei_out = args.nuclei and check_output(args.nuclei, args.overwrite, (".tif", ".tiff"))
    model, _, _ = load_cell_model(args.model)
    image_data, image = load_image(args.image)
    image, rgb = np.asarray(image), image_data.rgb
    if rgb and image.ndim == 3 and model.config.in_channels == 1:  # three grey fields
        image, rgb = np.moveaxis(image, -1, 0), False
    cells, nuclei = drive(predict_cells(model, image, rgb),
                          desc="predict cells", quiet=args.quiet, unit="field")  # fmt: skip
    write_cell_planes(out, cells, image_data.scale, unit=image_data.unit, overwrite=args.overwrite)
    if nuclei_out:
        write_labels(nuclei_out, nuclei, overwrite=args.overwrite)
    log.info("%d cells in %d field(s): %s", int(sum(len(np.unique(p)) - 1 for f in cells
             for p in f)), cells.shape[0], out)  # fmt: skip


def is_planes_file(path: str) -> bool:
    """A TIFF written as cell planes, or any 4D integer TIFF."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            meta = json.loads(tif.pages[0].description or "{}")
    except (OSError, ValueError, tifffile.TiffFileError):
        return False
    kind = meta.get("napari_distill") if isinstance(meta, dict) else None
    return kind == "cell_planes" or len(series.shape) == 4


def evaluate_cells_command(args: argparse.Namespace) -> None:
    """``evaluate --prediction cells.tif --truth CELLS.tif``: overlap-aware cell scores."""
    from napari_distill.cli._base import parse_slices, write_json
    from napari_distill.core.evaluation.cells import score_cells

    if args.json:
        check_output(args.json, args.overwrite)
    prediction, truth = _read_planes(args.prediction), _read_planes(args.truth)
    try:
        scores = score_cells(prediction, truth, parse_slices(args.slices)).as_dict()
    except (ValueError, IndexError) as error:
        raise UserError(str(error)) from error
    print(
        f"cells: AJI {scores['aji']:.4f}   Dice {scores['dice']:.4f}   F1@0.5 {scores['f1']:.4f}"
        f"   matched {scores['matched']}   missed {scores['missed']}   spurious "
        f"{scores['spurious']}"
    )
    if args.json:
        write_json(args.json, scores, args.overwrite)
    log.debug("scored %s against %s", Path(args.prediction).name, Path(args.truth).name)
