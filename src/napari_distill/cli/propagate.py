"""``propagate``: labels for the unpainted slices from the painted ones, without a model.

Writes the labels (and, if asked, the per-class probabilities) and logs the
leave-one-painted-slice-out estimate, so the user can compare it with a teacher's.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from napari_distill.cli._base import (
    UserError,
    check_output,
    command,
    drive,
    load_image,
    load_labels,
)
from napari_distill.core.config import PropagationConfig

log = logging.getLogger("napari_distill")


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", required=True, help="TIFF stack, 2D image or folder of slices")
    p.add_argument("--labels", required=True, help="labels with a few painted slices")
    p.add_argument("--out", required=True, help="labels TIFF to write (every slice filled)")
    p.add_argument(
        "--method",
        choices=("nearest", "flow"),
        default=PropagationConfig.method,
        help="nearest: copy the nearest painted slice (the one below at equal distance); "
        "flow: carry the painted labels slice by slice along the optical flow, blending the "
        f"painted slices below and above by distance (default: {PropagationConfig.method})",
    )
    p.add_argument("--probabilities", help="also write class probabilities (TIFF, classes first)")


def _check_tiff(path: str, option: str) -> None:
    from napari_distill.core.io.common import TIFF_SUFFIXES

    if Path(path).suffix.lower() not in TIFF_SUFFIXES:
        raise UserError(f"{option}: {path} is not a .tif or .tiff file name")


@command(
    "propagate",
    "Fill the unpainted slices from the painted ones (nearest slice or optical flow), no model.",
    add_arguments=_arguments,
    uses_device=False,
)
def propagate_command(args: argparse.Namespace) -> None:
    from napari_distill.core.inference import (
        NeighbourFlows,
        propagate,
        propagation_leave_one_out,
    )
    from napari_distill.core.io import write_labels, write_probabilities

    outputs = {"--out": args.out, "--probabilities": args.probabilities}
    for option, path in outputs.items():
        if path:
            _check_tiff(path, option)
            check_output(path, args.overwrite)
    if args.probabilities and Path(args.probabilities).resolve() == Path(args.out).resolve():
        raise UserError("--probabilities must name another file than --out")
    image_data, image = load_image(args.image)
    labels = load_labels(args.labels)
    spatial = tuple(image.shape[:-1] if image_data.rgb else image.shape)
    if labels.shape != spatial:
        raise UserError(
            f"--labels: {args.labels} has shape {labels.shape} but the image {args.image} "
            f"has {spatial}; give the labels painted on this image"
        )
    if not labels.any():
        raise UserError(f"--labels: {args.labels} has no painted slice to propagate from")
    config = PropagationConfig(method=args.method)
    flows = NeighbourFlows(image, config, rgb=image_data.rgb) if args.method == "flow" else None
    result = drive(
        propagate(
            image,
            labels,
            config,
            rgb=image_data.rgb,
            flows=flows,
            keep_probabilities=bool(args.probabilities),
        ),
        desc="propagate",
        quiet=args.quiet,
        unit="slice",
    )
    squeeze = labels.ndim == 2  # a 2D image gives 2D labels
    out_labels = result.labels[0] if squeeze else result.labels
    write_labels(
        args.out, out_labels, image_data.scale, unit=image_data.unit, overwrite=args.overwrite
    )
    log.info("wrote %s (%d slice(s) filled from %d painted)", args.out, len(result.slices),
             len(result.painted))  # fmt: skip
    if args.probabilities:
        probabilities = result.probabilities[:, 0] if squeeze else result.probabilities
        write_probabilities(
            args.probabilities,
            probabilities,
            image_data.scale,
            class_ids=result.class_ids,
            unit=image_data.unit,
            overwrite=args.overwrite,
        )
        log.info("wrote %s", args.probabilities)
    score = drive(
        propagation_leave_one_out(image, labels, config, rgb=image_data.rgb, flows=flows),
        desc="leave-one-out",
        quiet=args.quiet,
        unit="slice",
    )
    if not score.slices or math.isnan(score.mean_iou):
        log.info(
            "propagation, leave-one-painted-slice-out: no estimate (needs at least two painted "
            "slices)"
        )
        return
    log.info(
        "propagation, leave-one-painted-slice-out: mIoU %.2f over %d slices",
        score.mean_iou,
        len(score.slices),
    )
    per_slice = ", ".join(f"{i}: {v:.2f}" for i, v in score.per_slice.items())
    log.info("  per held-out slice (%s): %s", args.method, per_slice)
    log.info(
        "  (a held-out slice is twice as far from its painted neighbours as the slices filled: "
        "compare methods with it, do not read it as their score)"
    )
