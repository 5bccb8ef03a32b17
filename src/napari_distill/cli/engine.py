"""Engine commands: ``evaluate`` and ``sample`` (``train-teacher``: :mod:`.teacher`; ``predict``:
:mod:`.predict`)."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from napari_distill.cli._base import (
    UserError,
    check_output,
    command,
    load_labels,
    parse_slices,
    write_json,
)
from napari_distill.cli.cells import evaluate_cells_command, is_planes_file
from napari_distill.core.io import check_output_folder

log = logging.getLogger("napari_distill")


# ------------------------------------------------------------------------------ evaluate
def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--prediction", required=True, help="predicted labels TIFF")
    p.add_argument("--truth", required=True, help="ground-truth labels TIFF")
    p.add_argument("--slices", help="only these slices, e.g. 3,7,9 or 10-20")
    p.add_argument("--json", help="also write the scores as JSON")
    p.add_argument(
        "--instances",
        action="store_true",
        help="the files hold instance labels: report AJI and F1 at IoU 0.5 too",
    )


def evaluate_files(
    prediction: np.ndarray, truth: np.ndarray, slices: list[int] | None, instances: bool
) -> dict:
    """Scores of a prediction against the truth, as plain JSON-able values."""
    from napari_distill.core.evaluation import aji, evaluate_semantic, f1_at_iou

    if prediction.shape != truth.shape:
        raise UserError(f"prediction {prediction.shape} and truth {truth.shape} differ in shape")
    if slices is not None and prediction.ndim == 3 and max(slices) >= prediction.shape[0]:
        raise UserError(f"--slices: the stack has only {prediction.shape[0]} slices")
    if instances:
        return {
            "aji": aji(prediction, truth, slices),
            "f1_iou50": f1_at_iou(prediction, truth, 0.5, slices),
        }
    scores = evaluate_semantic(prediction, truth, slices=slices)
    return {
        "dice": {str(k): v for k, v in scores["dice"].items()},
        "iou": {str(k): v for k, v in scores["iou"].items()},
        "mean_dice": scores["mean_dice"],
        "mean_iou": scores["mean_iou"],
    }


@command(
    "evaluate",
    "Score predicted labels against ground truth.",
    add_arguments=_evaluate_arguments,
    uses_device=False,
)
def evaluate_command(args: argparse.Namespace) -> None:
    if is_planes_file(args.prediction) or is_planes_file(args.truth):  # overlapping cells
        return evaluate_cells_command(args)
    if args.json:
        check_output(args.json, args.overwrite)
    prediction = load_labels(args.prediction)
    truth = load_labels(args.truth)
    scores = evaluate_files(prediction, truth, parse_slices(args.slices), args.instances)
    lines = []
    if "dice" in scores:
        lines.append(f"{'class':>8} {'Dice':>7} {'IoU':>7}")
        for key, dice in scores["dice"].items():
            lines.append(f"{key:>8} {dice:7.4f} {scores['iou'][key]:7.4f}")
        lines.append(f"{'mean':>8} {scores['mean_dice']:7.4f} {scores['mean_iou']:7.4f}")
    else:
        lines.append(f"AJI {scores['aji']:.4f}   F1@0.5 {scores['f1_iou50']:.4f}")
    print("\n".join(lines))
    write_json(args.json, scores, args.overwrite)


# -------------------------------------------------------------------------------- sample
def _sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", choices=["medaka", "pap_smear"], help="which synthetic sample")
    p.add_argument("--out-dir", required=True, help="folder to write the TIFFs into")
    p.add_argument("--seed", type=int, default=0, help="another seed gives another specimen")


@command(
    "sample",
    "Write a synthetic sample (image, sparse labels, truth) as TIFFs.",
    add_arguments=_sample_arguments,
    uses_device=False,
)
def sample_command(args: argparse.Namespace) -> None:
    from napari_distill.core.io import write_image, write_labels
    from napari_distill.core.samples import make_medaka, make_pap_smear

    out_dir = check_output_folder(args.out_dir, create=True)
    if args.name == "medaka":
        sample = make_medaka(seed=args.seed)
        image, rgb = sample.image, False
        truth = {"labels_full": sample.labels_full}
    else:
        sample = make_pap_smear(seed=args.seed)
        image, rgb = sample.image, True
        truth = {"labels_full": sample.semantic_full, "nuclei": sample.nuclei}
    unit = "micrometer"
    # a stack of Pap smear fields has no physical spacing between fields
    scale = (1.0,) * (sample.labels_sparse.ndim - len(sample.scale)) + tuple(sample.scale)
    paths = [out_dir / f"{args.name}_image.tif", out_dir / f"{args.name}_labels_sparse.tif"]
    paths += [out_dir / f"{args.name}_{key}.tif" for key in truth]
    for path in paths:
        check_output(path, args.overwrite)
    write_image(paths[0], image, scale, rgb=rgb, unit=unit, overwrite=args.overwrite)
    write_labels(paths[1], sample.labels_sparse, scale, unit=unit, overwrite=args.overwrite)
    for path, array in zip(paths[2:], truth.values(), strict=True):
        write_labels(path, array, scale, unit=unit, overwrite=args.overwrite)
    names = ", ".join(f"{k}={v}" for k, v in sample.class_names.items())
    log.info("wrote %s (classes: %s)", ", ".join(str(p) for p in paths), names)
