"""The ``predict`` command: a teacher's or student's labels for an image."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from napari_distill.cli._base import (
    TIFF,
    UserError,
    add_cleanup_arguments,
    check_distinct,
    check_output,
    cleanup_config,
    command,
    drive,
    load_image,
    parse_class_ids,
)
from napari_distill.cli.batch import add_batch_arguments, predict_batch
from napari_distill.cli.cells import is_cell_model, predict_cells_command
from napari_distill.core.config import InstanceConfig, PredictConfig
from napari_distill.core.io import check_output_folder

log = logging.getLogger("napari_distill")


def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a teacher or student checkpoint (.pt)")
    p.add_argument(
        "--image",
        required=True,
        help="TIFF stack, OME-Zarr image (.ome.zarr, read chunk by chunk), 2D image or folder "
        "of slices; with --out-dir: many volumes, as a quoted glob ('scans/*.tif'), a folder "
        "(each image file and OME-Zarr image in it) or a .txt list",
    )
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument(
        "--out",
        help="labels to write: a TIFF, or an OME-Zarr (.zarr): into that image's container "
        "as its labels/napari_distill group when it is one (e.g. the --image itself), else a "
        "new container",
    )
    out.add_argument(
        "--out-dir",
        help="predict every volume of --image on a Dask cluster: NAME_labels.tif (or "
        ".ome.zarr) per volume here (those already there are skipped unless --overwrite), "
        "and summary.csv",
    )
    p.add_argument(
        "--out-format",
        choices=("tiff", "zarr"),
        help="with --out-dir: the labels files' format (default: OME-Zarr for OME-Zarr "
        "volumes, else TIFF); with --out, the name's suffix decides",
    )
    p.add_argument("--probabilities", help="also write class probabilities (TIFF, classes first)")
    p.add_argument("--nuclei", help="a cell model (Pap smear): also write the nuclei (TIFF)")
    p.add_argument("--instances", help="also write instance labels (TIFF)")
    p.add_argument(
        "--instance-classes",
        help="class ids split into touching instances (cells, nuclei), e.g. 2; "
        "other classes stay one label per class",
    )
    add_cleanup_arguments(p, "the labels written (--out, --instances)")
    p.add_argument("--tile-size", type=int, help="pixels (default: from device memory)")
    p.add_argument("--overlap", type=float, default=PredictConfig.overlap)
    p.add_argument("--no-crop", action="store_true", help="do not crop slices to the tissue")
    p.add_argument(
        "--mirror",
        action="store_true",
        help="average over the slice and its three mirror images (4x slower, a little better)",
    )
    p.add_argument("--work-dir", help="keep intermediate arrays as memory maps here (huge stacks)")
    add_batch_arguments(p)


def check_labels_output(path: str, overwrite: bool, out_format: str | None = None) -> Path:
    """``--out``: a TIFF, or an OME-Zarr container (``.zarr``), checked before any work."""
    from napari_distill.core.io import check_ngff_output

    zarr = Path(path).suffix.lower() == ".zarr"
    if out_format is not None and zarr != (out_format == "zarr"):
        raise UserError(
            f"--out-format {out_format} but --out {path}: name the file with the suffix of "
            "its format (.tif or .zarr), or drop --out-format"
        )
    if zarr:
        check_ngff_output(path, overwrite)
        return Path(path)
    return check_output(path, overwrite, TIFF)


def load_model(path: str, device: str = "cpu"):
    """Load a checkpoint that predicts segmentations (teacher or student; a student predicts
    with the branch or network its strategy's settings name)."""
    from napari_distill.core.models import load_checkpoint
    from napari_distill.core.strategies import prediction_bundle

    bundle, _ = load_checkpoint(path, device="cpu")
    if bundle.kind not in ("teacher", "student"):
        raise UserError(f"{path} is a {bundle.kind} checkpoint, not a teacher or a student")
    return prediction_bundle(bundle)


def _label_options(args: argparse.Namespace, bundle) -> tuple[InstanceConfig, tuple[int, ...]]:
    """The semantic clean-up and the classes split into instances that ``predict``'s
    arguments ask for, checked against the model's classes before anything is predicted."""
    names = {c: bundle.class_names.get(c, f"class {c}") for c in bundle.class_ids[1:]}
    cleanup = cleanup_config(args, names)
    return cleanup, parse_class_ids(args.instance_classes, "--instance-classes", names)


@command(
    "predict",
    "Segment every slice of an image with a teacher or student checkpoint.",
    add_arguments=_predict_arguments,
)
def predict_command(args: argparse.Namespace) -> None:
    from napari_distill.core.evaluation import apply_instance_config
    from napari_distill.core.inference import predict_bundle
    from napari_distill.core.io import write_labels, write_probabilities

    if is_cell_model(args.model):  # cell planes (docs/cells.md)
        return predict_cells_command(args)
    if args.out_dir:
        bundle = load_model(args.model)
        predict_batch(args, bundle, _label_options(args, bundle)[0])
        return
    check_distinct(out=args.out, probabilities=args.probabilities, instances=args.instances)
    out = check_labels_output(args.out, args.overwrite, args.out_format)
    for path in (args.probabilities, args.instances):
        if path:
            check_output(path, args.overwrite, TIFF)
    if args.work_dir:
        check_output_folder(args.work_dir, create=True)
    bundle = load_model(args.model)
    cleanup, instance_classes = _label_options(args, bundle)
    image_data, image = load_image(args.image)
    config = PredictConfig(
        tile_size=args.tile_size,
        overlap=args.overlap,
        crop_to_tissue=not args.no_crop,
        mirror=args.mirror,
    )
    prediction = drive(
        predict_bundle(
            bundle,
            image,
            config=config,
            device=args.device,
            keep_probabilities=bool(args.probabilities),
            out_dir=args.work_dir,
            rgb=image_data.rgb,
        ),
        desc="predict",
        quiet=args.quiet,
        unit="slice",
    )
    squeeze = image.ndim - (1 if image_data.rgb else 0) == 2  # a 2D image gives 2D labels
    labels = prediction.labels[0] if squeeze else prediction.labels
    labels = apply_instance_config(labels, cleanup)  # unchanged unless a clean-up is asked for
    write_labels(out, labels, image_data.scale, unit=image_data.unit, overwrite=args.overwrite)
    log.info("wrote %s", out)
    if args.probabilities:
        probabilities = prediction.probabilities
        if squeeze:
            probabilities = probabilities[:, 0]
        write_probabilities(
            args.probabilities,
            probabilities,
            image_data.scale,
            class_ids=prediction.class_ids,
            unit=image_data.unit,
            overwrite=args.overwrite,
        )
        log.info("wrote %s", args.probabilities)
    if args.instances:
        instances = np.asarray(labels)  # without --instance-classes: the cleaned labels
        if instance_classes:
            config = InstanceConfig(
                mode="instances", min_size=args.min_size, instance_classes=instance_classes
            )
            instances = apply_instance_config(instances, config)
        write_labels(
            args.instances,
            instances,
            image_data.scale,
            unit=image_data.unit,
            overwrite=args.overwrite,
        )
        log.info("wrote %s", args.instances)
