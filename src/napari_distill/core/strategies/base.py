"""What every student strategy shares: the data it trains on, its model, checkpoint, validation.

A student learns from two kinds of slices: the *annotated* slices the teacher trained on (with
their ground truth) and the *accepted* slices (unannotated slices whose teacher prediction the
quality classifier, or the user, accepted; with the teacher's hard prediction as pseudo-label).
Unaccepted, unannotated slices never reach a student. The teacher's validation slices stay
held out, so the student's validation score is comparable with the teacher's.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig, PredictConfig, TrainConfig, from_dict, to_dict
from ..inference import predict_bundle
from ..models import (
    CheckpointError,
    ModelBundle,
    build_model,
    count_parameters,
    ensemble_members,
    load_checkpoint,
    slice_members,
)
from ..preprocess import class_ids_from_labels
from ..progress import run_to_completion
from ..training import (
    SliceValidator,
    Split,
    Validator,
    auto_steps,
    members_held_out_apart,
    prepare_pair,
    split_painted_slices,
)

logger = logging.getLogger(__name__)

STUDENT_KIND = "student"


@dataclass
class StudentData:
    """The slices a student trains and validates on, with their targets.

    Attributes
    ----------
    stack:
        The image as ``(N, H, W, C)``.
    labels_stack:
        The painted labels as ``(N, H, W)`` (ground truth on annotated slices).
    annotated:
        Annotated slices used for training (the teacher's training slices).
    validation:
        Annotated slices held out for validation (the teacher's validation slices).
    accepted:
        Unannotated slices trained on with pseudo-labels (sorted, annotated ones removed).
    pseudo_labels:
        ``{slice: (H, W) class ids}``: the teacher's hard prediction of each accepted slice.
    """

    stack: np.ndarray
    labels_stack: np.ndarray
    annotated: list[int]
    validation: list[int]
    accepted: list[int]
    pseudo_labels: dict[int, np.ndarray]

    @property
    def n_training_pixels(self) -> int:
        height, width = self.stack.shape[1:3]
        return (len(self.annotated) + len(self.accepted)) * height * width


def teacher_split(
    teacher: ModelBundle,
    labels_stack: np.ndarray,
    annotated: np.ndarray,
    train_config: TrainConfig,
) -> Split:
    """The teacher's training / validation split if still annotated, else a fresh one."""
    training = teacher.extra.get("train_slices")
    validation = teacher.extra.get("validation_slices")
    painted = set(annotated.tolist())
    if training and validation and set(training) | set(validation) <= painted:
        # Slices painted after the teacher was trained are used for training, never validation.
        extra = sorted(painted - set(training) - set(validation))
        return sorted({int(i) for i in training} | set(extra)), [int(i) for i in validation]
    logger.info("the teacher's slice split does not match the labels: splitting anew")
    return split_painted_slices(labels_stack, annotated, train_config)


def prepare_student_data(
    teacher: ModelBundle,
    image: np.ndarray,
    labels: np.ndarray,
    accepted: Sequence[int],
    train_config: TrainConfig,
    device: torch.device,
    *,
    pseudo_labels: np.ndarray | None = None,
    predict_config: PredictConfig | None = None,
    rgb: bool | None = None,
) -> StudentData:
    """Check the inputs and gather the student's slices and pseudo-labels.

    Parameters
    ----------
    pseudo_labels:
        The teacher's predicted labels ``(N, H, W)`` (class ids) when already computed (the
        pipeline has them); otherwise the teacher predicts the accepted slices here, once.

    Raises
    ------
    ValueError
        Mismatched shapes, classes the teacher does not know, or accepted slices outside the
        stack.
    """
    stack, labels_stack, painted = prepare_pair(image, labels, rgb)
    unknown = sorted(set(class_ids_from_labels(labels_stack, painted)) - set(teacher.class_ids))
    if unknown:
        raise ValueError(
            f"the labels hold class ids {unknown} the teacher was not trained on (it knows "
            f"{list(teacher.class_ids)}): retrain the teacher with these labels first"
        )
    n = stack.shape[0]
    requested = sorted({int(i) for i in accepted})
    outside = [i for i in requested if not 0 <= i < n]
    if outside:
        raise ValueError(f"accepted slices {outside} are outside the stack of {n} slice(s)")
    chosen = [i for i in requested if i not in set(painted.tolist())]
    training, validation = teacher_split(teacher, labels_stack, painted, train_config)
    if pseudo_labels is None and chosen:
        logger.info("teacher predicts the %d accepted slice(s) for pseudo-labels", len(chosen))
        prediction = run_to_completion(
            predict_bundle(
                teacher,
                image,
                config=predict_config or PredictConfig(),
                device=device,
                slices=chosen,
                keep_probabilities=False,
                rgb=rgb,
            )
        )
        pseudo_labels = prediction.labels
    if pseudo_labels is not None and np.shape(pseudo_labels)[:3] != labels_stack.shape:
        raise ValueError(
            f"pseudo-labels of shape {np.shape(pseudo_labels)} do not match the labels "
            f"{labels_stack.shape}"
        )
    pseudo = {i: np.asarray(pseudo_labels[i]) for i in chosen} if chosen else {}
    return StudentData(stack, labels_stack, training, validation, chosen, pseudo)


def student_model(
    teacher: ModelBundle,
    init_from_teacher: bool,
    smaller_student: bool,
    seed: int,
    validator: Validator | None = None,
    *,
    larger_student: bool = False,
    dropout: float | None = None,
) -> tuple[torch.nn.Module, ModelConfig, bool]:
    """The student network, its configuration and whether it starts from the teacher's weights.

    A student is one network, even when its teacher is an ensemble: distillation is what
    carries the ensemble's knowledge into a model that costs one network to run. Started from
    an ensemble's weights, it takes the member that scores best with ``validator`` (the
    student's validation slices), or the first member without one: when the members held out
    different slices (:func:`members_held_out_apart`) the first is the only one that never
    trained on the student's validation slices, so the student's score stays honest. A smaller
    or larger student cannot take the teacher's weights (their shapes differ): it starts from
    scratch, and a warning says so when both were asked for. ``dropout`` (a noisy student's)
    replaces the configuration's dropout rate, in a network started from the teacher too.
    """
    torch.manual_seed(seed)  # reproducible initial weights and dropout masks
    if smaller_student or larger_student:
        size = "smaller" if smaller_student else "larger"
        if init_from_teacher:
            logger.warning(
                "a %s student cannot start from the teacher's weights (the shapes differ): "
                "training it from scratch",
                size,
            )
        config = (
            teacher.model_config.student() if smaller_student else teacher.model_config.larger()
        )
        config = _with_dropout(config, dropout)
        return build_model(config), config, False
    config = _with_dropout(teacher.model_config.single(), dropout)
    if not init_from_teacher:
        return build_model(config), config, False
    if members_held_out_apart(teacher):
        members = ensemble_members(teacher.model)
        logger.info(
            "student: starts from teacher member 1 of %d, the one that never trained on the "
            "validation slices",
            len(members),
        )
        source = members[0]
    else:
        source = best_member(teacher.model, validator)
    if dropout is None:
        return copy.deepcopy(source).cpu(), config, True
    # Another dropout rate: the same network built anew, the member's weights loaded into it
    # (dropout layers hold no weights and come last in their block, so the names match).
    model = build_model(config)
    model.load_state_dict({k: v.detach().cpu() for k, v in source.state_dict().items()})
    return model, config, True


def _with_dropout(config: ModelConfig, dropout: float | None) -> ModelConfig:
    return config if dropout is None else dataclasses.replace(config, dropout=dropout)


def best_member(model: torch.nn.Module, validator: Validator | None) -> torch.nn.Module:
    """The network of ``model`` (one of an ensemble's members) that ``validator`` scores best.

    A single network is returned as it is; an ensemble without a validator gives its first.
    Members of a views ensemble that slice along another axis are not candidates: a student
    predicts slice by slice.
    """
    members = slice_members(model)
    if len(members) == 1:
        return members[0]
    if validator is None:
        logger.info("student: no validation slice to choose a teacher member by; the first")
        return members[0]
    scores = [validator(member.eval()) for member in members]
    best = int(np.argmax(scores))
    logger.info(
        "student: starts from teacher member %d of %d (validation Dice %s)",
        best + 1,
        len(members),
        ", ".join(f"{score:.3f}" for score in scores),
    )
    return members[best]


def new_student_bundle(
    teacher: ModelBundle,
    model: torch.nn.Module,
    model_config: ModelConfig,
    *,
    strategy: str,
    strategy_config: Any,
    train_config: TrainConfig,
    data: StudentData,
    from_teacher: bool,
) -> ModelBundle:
    """A student bundle: the teacher's classes and normalisation, the strategy in ``extra``."""
    return ModelBundle(
        model=model,
        model_config=model_config,
        class_ids=teacher.class_ids,
        class_names=dict(teacher.class_names),
        normalization=teacher.normalization,
        kind=STUDENT_KIND,
        train_config=train_config,
        extra={
            "strategy": strategy,
            "strategy_config": to_dict(strategy_config),
            "from_teacher": from_teacher,
            "train_slices": list(data.annotated),
            "validation_slices": list(data.validation),
            "accepted_slices": list(data.accepted),
            "teacher_step": int(teacher.step),
        },
    )


def student_validator(
    data: StudentData, bundle: ModelBundle, device: torch.device
) -> SliceValidator | None:
    """Mean Dice on the validation slices' ground truth; None when there is none."""
    if not data.validation:
        return None
    return SliceValidator(
        data.stack,
        data.labels_stack,
        data.validation,
        bundle.class_ids,
        bundle.normalization,
        device,
        bundle.model_config.context_slices,
    )


def student_steps(
    train_config: TrainConfig,
    data: StudentData,
    device: torch.device,
    from_teacher: bool,
    model_config: ModelConfig,
) -> int:
    """``train_config.steps``, or a budget from the student's training pixels (a shorter one
    for a student fine-tuned from its teacher's weights than for one trained from scratch);
    ``model_config`` is the student's (its working scale sets the image pixels a patch
    covers)."""
    if train_config.steps is not None:
        return int(train_config.steps)
    return auto_steps(
        data.n_training_pixels,
        device,
        train_config.batch_size,
        model_config.image_pixels(train_config.patch_size),
        from_scratch=not from_teacher,
    )


def load_student(
    path: str | os.PathLike[str], strategy: str, config_class: type
) -> tuple[ModelBundle, dict[str, Any], Any]:
    """A student checkpoint of ``strategy`` for resuming: bundle, raw dict, strategy config.

    Raises
    ------
    CheckpointError
        Not a student checkpoint, or one written by another strategy.
    """
    bundle, checkpoint = load_checkpoint(path, device="cpu", kind=STUDENT_KIND)
    found = bundle.extra.get("strategy")
    if found != strategy:
        raise CheckpointError(
            f"{path} is a student of strategy {found!r}, not {strategy!r}: resume it with "
            f"the strategy it was trained with"
        )
    config = from_dict(config_class, bundle.extra.get("strategy_config") or {})
    return bundle, checkpoint, config


def describe_student(bundle: ModelBundle, data: StudentData, total: int, device: Any) -> None:
    """Log what the student is about to train on."""
    logger.info(
        "student (%s): %d annotated + %d accepted training slices, %d validation slices, "
        "%d parameters, %d steps on %s",
        bundle.extra.get("strategy"),
        len(data.annotated),
        len(data.accepted),
        len(data.validation),
        count_parameters(bundle.model),
        total,
        device,
    )


def with_steps(train_config: TrainConfig, steps: int | None) -> TrainConfig:
    """``train_config`` with another step budget (None keeps it)."""
    return train_config if steps is None else dataclasses.replace(train_config, steps=steps)
