"""Engine commands: ``train-teacher``, ``predict``, ``evaluate`` and ``sample``."""

from __future__ import annotations

import argparse
import logging

import numpy as np

from napari_distill.cli._base import (
    TIFF,
    UserError,
    add_cleanup_arguments,
    add_downsample_argument,
    add_teachers_argument,
    check_distinct,
    check_output,
    check_training_output,
    cleanup_config,
    command,
    drive,
    ensemble_settings,
    load_image,
    load_labels,
    parse_class_ids,
    parse_slices,
    write_json,
)
from napari_distill.core.config import InstanceConfig, ModelConfig, PredictConfig, TrainConfig
from napari_distill.core.io import check_output_folder

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
    p.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    p.add_argument(
        "--patch-size",
        type=int,
        default=TrainConfig.patch_size,
        help="pixels at the network's scale (times --downsample in the image's pixels)",
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
    p.add_argument("--validation-fraction", type=float, default=TrainConfig.validation_fraction)
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
    _, image = load_image(args.image)
    labels = load_labels(args.labels)
    model_config = ModelConfig(
        base_channels=args.base_channels,
        depth=args.depth,
        dropout=args.dropout,
        context_slices=args.context_slices,
        deep_supervision=args.deep_supervision,
        **ensemble_settings(args),
        downsample=args.downsample,
    )
    steps = args.steps
    if args.epochs is not None:
        steps = steps_for_epochs(
            args.epochs, labels, args.batch_size, model_config.image_pixels(args.patch_size)
        )
    train_config = TrainConfig(
        steps=steps,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        learning_rate=args.learning_rate,
        validation_fraction=args.validation_fraction,
        patience=args.patience,
        keep_final=args.keep == "final",
        augment=not args.no_augment,
        elastic=args.elastic,
        seed=args.seed,
        max_minutes=args.max_minutes,
    )
    run = train_teacher(
        image,
        labels,
        model_config=model_config,
        train_config=train_config,
        device=args.device,
        class_names=parse_class_names(args.class_names),
        resume_from=args.resume,
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


# ------------------------------------------------------------------------------- predict
def _predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a teacher or student checkpoint (.pt)")
    p.add_argument("--image", required=True, help="TIFF stack, 2D image or folder of slices")
    p.add_argument("--out", required=True, help="labels TIFF to write")
    p.add_argument("--probabilities", help="also write class probabilities (TIFF, classes first)")
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


def load_model(path: str, device: str = "cpu"):
    """Load a checkpoint that predicts segmentations (teacher or student)."""
    from napari_distill.core.models import load_checkpoint

    bundle, _ = load_checkpoint(path, device="cpu")
    if bundle.kind not in ("teacher", "student"):
        raise UserError(f"{path} is a {bundle.kind} checkpoint, not a teacher or a student")
    return bundle


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

    check_distinct(out=args.out, probabilities=args.probabilities, instances=args.instances)
    out = check_output(args.out, args.overwrite, TIFF)
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
