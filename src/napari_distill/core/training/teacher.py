"""The teacher: checks on the painted labels, the teacher's model and bundle, and
:func:`train_teacher`, which assembles the supervised objective and the validator of
:mod:`.objectives` into a :class:`~napari_distill.core.training.TrainingRun` (the slice split is
:mod:`.splits`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import numpy as np
import torch

from ..config import ModelConfig, TrainConfig
from ..device import select_device
from ..inference import check_volume, context_margin
from ..models import ModelBundle, build_model, count_parameters, load_checkpoint
from ..preprocess import (
    Normalization,
    annotated_slices,
    as_stack,
    check_label_ids,
    check_pair,
    class_ids_from_labels,
    input_channels,
    labels_as_stack,
)
from .loop import TrainingRun
from .losses import class_weights_from_labels
from .objectives import EnsembleObjective, EnsembleValidator, SliceValidator, SupervisedObjective
from .plan import TeacherPlan
from .sampler import Augmentation, SliceSampler
from .schedule import auto_steps
from .splits import Split, early_stopping_allowed, member_splits, saved_splits, splits_extra
from .views import ViewValidator, view_objective

logger = logging.getLogger(__name__)


def prepare_pair(
    image: np.ndarray, labels: np.ndarray, rgb: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The image as ``(N, H, W, C)``, the labels as ``(N, H, W)`` and the annotated slices.

    Raises
    ------
    ValueError
        Mismatched shapes, non-integer or negative labels, no annotated slice, or a single
        class painted over whole slices (nothing to tell it from).
    """
    stack = as_stack(image, rgb)
    labels_stack = labels_as_stack(np.asarray(labels))
    check_pair(stack, labels_stack)
    labels_stack = check_label_ids(labels_stack)
    annotated = annotated_slices(labels_stack)
    if len(annotated) == 0:
        raise ValueError(
            "the labels layer has no annotated slice: paint at least one slice (every class, "
            "with 0 for background) before training a teacher"
        )
    class_ids = class_ids_from_labels(labels_stack, annotated)
    has_background = any(np.any(labels_stack[i] == 0) for i in annotated)
    if len(class_ids) - (0 if has_background else 1) < 2:
        painted = class_ids[-1]
        raise ValueError(
            f"the annotated slices {annotated.tolist()} hold only one class (id {painted}) and "
            "no unpainted background: paint at least two classes, or leave background as 0"
        )
    return stack, labels_stack, annotated


def teacher_model_config(
    base: ModelConfig | None, n_colours: int, class_ids: Sequence[int]
) -> ModelConfig:
    """``base`` (or the defaults) with input and output channels set from the data."""
    base = base or ModelConfig()
    config = dataclasses.replace(
        base,
        in_channels=input_channels(n_colours, base.context_slices),
        num_classes=len(class_ids),
    )
    if (base.in_channels, base.num_classes) != (config.in_channels, config.num_classes):
        logger.info(
            "model channels set from the data: %d input, %d classes",
            config.in_channels,
            config.num_classes,
        )
    return config


def new_teacher_bundle(
    stack: np.ndarray,
    labels_stack: np.ndarray,
    annotated: np.ndarray,
    splits: Sequence[Split],
    model_config: ModelConfig | None,
    train_config: TrainConfig,
    class_names: dict[int, str] | None = None,
) -> ModelBundle:
    """A freshly initialised teacher with its classes, normalisation and slice splits (one per
    member: the first is the teacher's, which its students keep)."""
    class_ids = class_ids_from_labels(labels_stack, annotated)
    config = teacher_model_config(model_config, stack.shape[-1], class_ids)
    names = {0: "background", **(class_names or {})}
    if train_config.clip_to_foreground:
        normalization = Normalization.from_foreground(
            stack, labels_stack, annotated, seed=train_config.seed
        )
    else:
        normalization = Normalization.from_image(stack, seed=train_config.seed)
    return ModelBundle(
        model=build_model(config),
        model_config=config,
        class_ids=class_ids,
        class_names={c: names[c] for c in class_ids if c in names},
        normalization=normalization,
        kind="teacher",
        train_config=train_config,
        extra=splits_extra(splits),
    )


def teacher_components(
    stack: np.ndarray,
    labels_stack: np.ndarray,
    splits: Sequence[Split],
    bundle: ModelBundle,
    train_config: TrainConfig,
    device: torch.device,
) -> tuple[SupervisedObjective | EnsembleObjective, SliceValidator | EnsembleValidator]:
    """The objective on the training slices and the validator on the validation slices: with
    one split per member of an ensemble, one of each per member."""
    if bundle.model_config.views:
        check_volume(stack)
    parts = [
        _member_components(stack, labels_stack, split, bundle, train_config, device, member)
        for member, split in enumerate(splits)
    ]
    if len(parts) == 1:
        return parts[0]
    objectives, validators = zip(*parts, strict=True)
    return EnsembleObjective(objectives), EnsembleValidator(validators)


def _member_components(
    stack: np.ndarray,
    labels_stack: np.ndarray,
    split: Split,
    bundle: ModelBundle,
    train_config: TrainConfig,
    device: torch.device,
    member: int = 0,
) -> tuple[SupervisedObjective, SliceValidator | ViewValidator]:
    training, validation = split
    context = bundle.model_config.context_slices
    augmentation = None
    if train_config.augment:
        augmentation = Augmentation(
            intensity_scale=train_config.intensity_jitter,
            intensity_shift=train_config.intensity_jitter,
            elastic=train_config.elastic,
        )
    axis = bundle.model_config.member_axis(member)
    if axis != 0:  # a member of a views ensemble that sees the painted slices as rows
        objective = view_objective(
            stack, labels_stack, training, axis, bundle, train_config, augmentation
        )
        view_validator = ViewValidator(
            stack,
            labels_stack,
            validation,
            bundle.class_ids,
            bundle.normalization,
            device,
            axis,
            context_margin(bundle),
            context,
        )
        return objective, view_validator
    sampler = SliceSampler(
        stack,
        {i: labels_stack[i] for i in training},
        bundle.class_ids,
        bundle.normalization,
        patch_size=bundle.model_config.image_pixels(train_config.patch_size),
        batch_size=train_config.batch_size,
        context_slices=context,
        foreground_fraction=train_config.foreground_fraction,
        augmentation=augmentation,
    )
    class_weight = None
    if train_config.class_weighting:
        class_weight = class_weights_from_labels(sampler.target_indices, sampler.num_classes)
    objective = SupervisedObjective(sampler, class_weight, train_config.dice_weight)
    validator = SliceValidator(
        stack, labels_stack, validation, bundle.class_ids, bundle.normalization, device, context
    )
    return objective, validator


def _automatic_steps(
    stack: np.ndarray,
    splits: Sequence[Split],
    bundle: ModelBundle,
    train_config: TrainConfig,
    device: torch.device,
) -> int:
    """The budget for ``steps=None``, from the first member's training slices."""
    return auto_steps(
        len(splits[0][0]) * stack.shape[1] * stack.shape[2],
        device,
        train_config.batch_size,
        bundle.model_config.image_pixels(train_config.patch_size),
    )


def _size_text(bundle: ModelBundle) -> str:
    members = bundle.model_config.members
    each = count_parameters(bundle.model) // members
    text = f"{each} parameters" if members == 1 else f"{members} networks of {each} parameters"
    factor = bundle.model_config.downsample
    return text if factor == 1 else f"{text}, slices reduced {factor}x per side"


def train_teacher(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen, so a shared default is safe
    device: str | torch.device = "auto",
    class_names: dict[int, str] | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    rgb: bool | None = None,
    plan: TeacherPlan | None = None,
) -> TrainingRun:
    """Prepare a teacher run on the annotated slices of ``labels`` (then iterate ``run.steps()``).

    Parameters
    ----------
    image:
        2D, 2D RGB, a stack or an RGB stack (see :func:`~napari_distill.core.preprocess.as_stack`).
    labels:
        Class ids with the image's spatial shape; slices with any non-zero label are annotated
        (0 is background there), the others are ignored.
    model_config:
        Width, depth, dropout, norm and 2.5D context; input and output channels are set from
        the data. Default: the :class:`ModelConfig` defaults.
    train_config:
        Steps (None: :func:`auto_steps`), batch, patch, learning rate, validation, seed...
    device:
        ``"auto"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or a torch device.
    class_names:
        Optional ``{class_id: name}`` stored with the model.
    resume_from:
        A checkpoint written by :meth:`TrainingRun.save`: continue it (see
        :func:`resume_training`); ``model_config`` and ``train_config`` are then ignored.
    rgb:
        Whether the last axis of ``image`` is colour (None: guess as napari does).
    plan:
        Settings planned from the data (:func:`~napari_distill.core.training.plan.plan_teacher`
        or ``plan_for_data``): its values replace those of ``model_config`` and
        ``train_config`` (the settings the user gave are in it as given), every decision is
        logged, and the plan is stored in the checkpoint (``bundle.extra["plan"]``). None:
        the configs as they are.

    Raises
    ------
    ValueError
        Shape mismatch, no annotated slice, a single class painted, or an unavailable device.
    """
    if resume_from is not None:
        return resume_training(
            resume_from, image, labels, device=device, class_names=class_names, rgb=rgb
        )
    stack, labels_stack, annotated = prepare_pair(image, labels, rgb)
    if plan is not None:
        model_config, train_config = plan.apply(model_config, train_config)
        plan.log(logger)
    torch_device = select_device(device)
    members = (model_config or ModelConfig()).members
    splits = member_splits(labels_stack, annotated, train_config, members)
    torch.manual_seed(train_config.seed)  # reproducible initial weights and dropout
    bundle = new_teacher_bundle(
        stack, labels_stack, annotated, splits, model_config, train_config, class_names
    )
    if plan is not None:
        bundle.extra["plan"] = plan.to_dict()
    objective, validator = teacher_components(
        stack, labels_stack, splits, bundle, train_config, torch_device
    )
    total = train_config.steps or _automatic_steps(
        stack, splits, bundle, train_config, torch_device
    )
    logger.info(
        "teacher: classes %s, %d training and %d validation slices%s, %s, %d steps on %s",
        bundle.class_ids,
        len(splits[0][0]),
        len(splits[0][1]),
        _members_validation_text(splits),
        _size_text(bundle),
        total,
        torch_device,
    )
    return TrainingRun(
        bundle,
        objective,
        train_config,
        device=torch_device,
        total_steps=total,
        validator=validator,
        early_stopping=early_stopping_allowed(*splits),
    )


def _members_validation_text(splits: Sequence[Split]) -> str:
    if len(splits) == 1:
        return ""
    held_out = "; ".join(",".join(str(i) for i in validation) for _, validation in splits)
    return f" each (members validate on slices {held_out})"


def resume_training(
    path: str | os.PathLike[str],
    image: np.ndarray,
    labels: np.ndarray,
    *,
    device: str | torch.device = "auto",
    class_names: dict[int, str] | None = None,
    rgb: bool | None = None,
) -> TrainingRun:
    """Continue a teacher run saved by :meth:`TrainingRun.save` up to its planned total
    (:meth:`TrainingRun.set_total_steps` on the run returned trains it longer).

    The model, classes, normalisation, settings, slice split, optimiser, step, random states
    and early-stopping counters come from the checkpoint; ``image`` and ``labels`` must be the
    data it was trained on (more painted slices are fine: they are used if the split allows).

    Raises
    ------
    CheckpointError
        The file is not a usable teacher checkpoint.
    ValueError
        The labels hold classes the checkpoint does not know, or do not fit the image.
    """
    torch_device = select_device(device)
    bundle, checkpoint = load_checkpoint(path, device="cpu", kind="teacher")
    stack, labels_stack, annotated = prepare_pair(image, labels, rgb)
    unknown = sorted(set(class_ids_from_labels(labels_stack, annotated)) - set(bundle.class_ids))
    if unknown:
        raise ValueError(
            f"the labels hold class ids {unknown} that the checkpoint {path} was not trained "
            f"on (it knows {list(bundle.class_ids)}): train a new teacher instead"
        )
    train_config = bundle.train_config or TrainConfig()
    splits = saved_splits(bundle, labels_stack, annotated, train_config)
    bundle.class_names.update(class_names or {})
    objective, validator = teacher_components(
        stack, labels_stack, splits, bundle, train_config, torch_device
    )
    resume = checkpoint.get("resume") or {}
    total = resume.get("total_steps") or train_config.steps
    if total is None:
        total = _automatic_steps(stack, splits, bundle, train_config, torch_device)
    run = TrainingRun(
        bundle,
        objective,
        train_config,
        device=torch_device,
        total_steps=int(total),
        validator=validator,
        early_stopping=early_stopping_allowed(*splits),
    )
    run.restore(checkpoint)
    logger.info("resuming %s at step %d of %d", path, run.step, run.total_steps)
    return run
