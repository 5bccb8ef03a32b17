"""Strategy ``mixed``: mixed supervision with entropy minimisation and KL (method 3).

Some slices have full masks, others only weak labels: scribbles (a labels array in which 0 is
*unknown*, and the background has its own label, :attr:`MixedConfig.background_label`) and
points (rows ``(slice, y, x, class)``, drawn as disks of :attr:`MixedConfig.point_radius`).
One network, :class:`~napari_distill.core.models.BranchedUNet`, holds a shared encoder and two
decoders:

- the **teacher branch** learns the full masks (the supervised loss the teacher trained with);
- the **student branch** learns every labelled pixel: the full masks, and on the weak slices
  the scribbled or clicked pixels only (partial cross-entropy), plus there
  ``lambda_kl * KL(p_teacher || p_student) + lambda_h * H(p_student)``.

Choices (the paper leaves them open):

- The teacher's probabilities in the KL term are detached: the term moves the student towards
  the teacher, never the teacher towards the student (the shared encoder still learns from it).
- The student branch also learns the full masks, with the teacher branch's loss (cross-entropy
  and Dice): a full mask is the most complete weak label, and without the Dice term the
  student branch lagged far behind a network trained on the full masks alone (a first
  benchmark run, 24 against 51 Dice on the Medaka sample).
- A slice with both a full mask and weak labels counts as fully labelled.
- Half the patches come from fully labelled slices, half from weak ones
  (:attr:`MixedConfig.full_share`), patches centred on labelled pixels as the teacher's are.
- Given a trained teacher of the same shape, both branches start from it
  (:attr:`MixedConfig.init_from_teacher`); the command line's ``run`` trains from scratch.
- Slice tags (which classes a slice contains; :mod:`.tags`) add
  ``lambda_tag * BCE(top-k pooled p_student, tags)`` on one whole tagged slice a step (a
  patch may miss a class its slice holds). Tagged slices with a full mask are skipped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..config import PredictConfig, TrainConfig
from ..device import select_device
from ..io import points_to_labels
from ..models import (
    STUDENT_BRANCH,
    TEACHER_BRANCH,
    BranchedUNet,
    BranchView,
    ModelBundle,
    build_model,
    slice_members,
)
from ..training import (
    Augmentation,
    SliceSampler,
    ce_dice_loss,
    class_weights_from_labels,
    early_stopping_allowed,
    prepare_pair,
)
from .base import (
    StudentData,
    describe_student,
    load_student,
    new_student_bundle,
    student_steps,
    student_validator,
    teacher_split,
)
from .configs import MixedConfig
from .tags import TagSource, tag_loss
from .weak_losses import entropy_loss, kl_loss, partial_cross_entropy

if TYPE_CHECKING:
    from ..training import TrainingRun

logger = logging.getLogger(__name__)

NAME = "mixed"


def weak_targets(
    weak_labels: np.ndarray | None,
    points: np.ndarray | None,
    shape: tuple[int, int, int],
    class_ids: Sequence[int],
    config: MixedConfig,
) -> np.ndarray:
    """The weak labels as class ids ``(N, H, W)`` with -1 where unknown.

    Points are drawn as disks over the scribbles' unknown pixels.

    Raises
    ------
    ValueError
        Weak labels of another shape, or classes the full masks do not have.
    """
    weak = np.zeros(shape, np.int64)
    if weak_labels is not None:
        painted = np.asarray(weak_labels).astype(np.int64)
        if painted.ndim == 2:
            painted = painted[None]
        if painted.shape != shape:
            raise ValueError(
                f"the weak labels have shape {painted.shape}, the labels {shape}: paint them "
                "on the same image"
            )
        weak = painted.copy()
    if points is not None and len(points):
        disks = points_to_labels(points, shape, config.point_radius, config.background_label)
        weak = np.where(weak == 0, disks, weak)
    found = set(np.unique(weak).tolist()) - {0, config.background_label}
    unknown = sorted(found - {int(c) for c in class_ids})
    if unknown:
        raise ValueError(
            f"the weak labels hold classes {unknown} that no full mask has (known: "
            f"{list(class_ids)}; background is painted as {config.background_label}): paint "
            "each class fully on at least one slice"
        )
    out = np.where(weak == config.background_label, 0, weak)
    return np.where(weak == 0, -1, out)


def weak_slice_counts(full: np.ndarray, weak: np.ndarray | None) -> tuple[int, int, int]:
    """``(slices with a full mask, slices with weak labels only, slices with both)``."""
    full_slices = {int(i) for i in np.flatnonzero(np.asarray(full).reshape(len(full), -1).any(1))}
    if weak is None:
        return len(full_slices), 0, 0
    weak_array = np.asarray(weak).reshape(len(full), -1)
    weak_slices = {int(i) for i in np.flatnonzero(weak_array.any(1))}
    return len(full_slices), len(weak_slices - full_slices), len(weak_slices & full_slices)


class MixedObjective:
    """Patches from full and weak slices; the loss of both branches (module docstring)."""

    phase = "mixed"

    def __init__(
        self,
        full: SliceSampler | None,
        weak: SliceSampler | None,
        config: MixedConfig,
        class_weight: torch.Tensor | None = None,
        dice_weight: float = 0.0,
        tags: TagSource | None = None,
    ):
        self.tags = tags if config.lambda_tag > 0 else None
        self.samplers = [s for s in (full, weak) if s is not None]
        if not self.samplers:
            raise ValueError("the mixed student has no slice to train on")
        self.is_full = [s is full for s in self.samplers]
        self.config = config
        self.class_weight = class_weight
        self.dice_weight = dice_weight
        self.batch_size = self.samplers[0].batch_size
        self.num_classes = self.samplers[0].num_classes
        odds = [1.0] * len(self.samplers)
        if len(self.samplers) == 2:
            odds = [config.full_share, 1.0 - config.full_share]
        self._odds = np.asarray(odds) / sum(odds)

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        sources = rng.choice(len(self.samplers), size=self.batch_size, p=self._odds)
        patches = [self.samplers[s].sample(rng) for s in sources]
        known = [p.get("weight", np.ones(p["y"].shape, np.float32)) for p in patches]
        batch = {
            "x": torch.from_numpy(np.stack([p["x"] for p in patches]).astype(np.float32)),
            "y": torch.from_numpy(np.stack([p["y"] for p in patches]).astype(np.int64)),
            "known": torch.from_numpy(np.stack(known).astype(np.float32)),
            "full": torch.as_tensor([self.is_full[s] for s in sources], dtype=torch.bool),
        }
        if self.tags is not None:
            batch.update(self.tags.batch(rng))
        return batch

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        total, terms = mixed_loss(
            *model.forward_branches(batch["x"]),
            batch["y"],
            batch["known"] > 0,
            batch["full"],
            self.config,
            class_weight=None
            if self.class_weight is None
            else self.class_weight.to(batch["x"].device),
            dice_weight=self.dice_weight,
        )
        if "tag_x" in batch:
            (student,) = model.forward_branches(batch["tag_x"], (STUDENT_BRANCH,))
            tags = tag_loss(
                student, batch["tag_present"], batch["tag_known"], self.config.tag_top_share
            )
            terms["tags"] = float(tags.detach())
            total = total + self.config.lambda_tag * tags
        return total, terms


def mixed_loss(
    teacher_logits: torch.Tensor,
    student_logits: torch.Tensor,
    target: torch.Tensor,
    known: torch.Tensor,
    full: torch.Tensor,
    config: MixedConfig,
    *,
    class_weight: torch.Tensor | None = None,
    dice_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Both branches' loss on a batch: ``full`` ``(B,)`` marks fully labelled patches,
    ``known`` ``(B, H, W)`` the labelled pixels (all of a full patch's)."""
    num_classes = student_logits.shape[1]
    terms: dict[str, float] = {}
    total = student_logits.sum() * 0.0
    if bool(full.any()):
        teacher, _ = ce_dice_loss(
            teacher_logits[full], target[full], num_classes, class_weight, dice_weight
        )
        terms["teacher"] = float(teacher.detach())
        total = total + teacher
    if bool(full.any()):  # the student branch learns full masks as the teacher branch does
        student, _ = ce_dice_loss(
            student_logits[full], target[full], num_classes, class_weight, dice_weight
        )
        terms["student_full"] = float(student.detach())
        total = total + student
    weak = (~full)[:, None, None].expand_as(known)
    if bool(weak.any()):
        partial = partial_cross_entropy(
            student_logits[~full], target[~full].clamp_min(0), known[~full], class_weight
        )
        terms["student_weak"] = float(partial.detach())
        total = total + partial
        kl = kl_loss(student_logits, teacher_logits, weak)
        entropy = entropy_loss(student_logits, weak)
        terms["kl"], terms["entropy"] = float(kl.detach()), float(entropy.detach())
        total = total + config.lambda_kl * kl + config.lambda_h * entropy
    return total, terms


def _samplers(
    data: StudentData,
    weak: np.ndarray,
    bundle: ModelBundle,
    train_config: TrainConfig,
) -> tuple[SliceSampler | None, SliceSampler | None]:
    augmentation = Augmentation(elastic=train_config.elastic) if train_config.augment else None
    common = {
        "patch_size": bundle.model_config.image_pixels(train_config.patch_size),
        "batch_size": train_config.batch_size,
        "context_slices": bundle.model_config.context_slices,
        "foreground_fraction": train_config.foreground_fraction,
        "augmentation": augmentation,
    }
    args = (data.stack,)
    full = None
    if data.annotated:
        truth = {i: data.labels_stack[i] for i in data.annotated}
        full = SliceSampler(*args, truth, bundle.class_ids, bundle.normalization, **common)
    weak_sampler = None
    if data.accepted:
        targets = {i: np.where(weak[i] < 0, 0, weak[i]) for i in data.accepted}
        known = {i: (weak[i] >= 0).astype(np.float32) for i in data.accepted}
        weak_sampler = SliceSampler(
            *args, targets, bundle.class_ids, bundle.normalization, weights=known, **common
        )
    return full, weak_sampler


def mixed_prediction(bundle: ModelBundle) -> ModelBundle:
    """The bundle that predicts with the branch its settings name (the student's by default)."""
    chosen = (bundle.extra.get("strategy_config") or {}).get("predict_with", "student")
    if chosen != "teacher" or not isinstance(bundle.model, BranchedUNet):
        return bundle
    return dataclasses.replace(bundle, model=BranchView(bundle.model, TEACHER_BRANCH))


def build_mixed(
    teacher: ModelBundle,
    image: np.ndarray,
    labels: np.ndarray,
    accepted: Sequence[int] = (),
    *,
    train_config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen, never mutated
    strategy_config: MixedConfig = MixedConfig(),  # noqa: B008
    device: str | torch.device = "auto",
    weak_labels: np.ndarray | None = None,
    points: np.ndarray | None = None,
    tags: Mapping[int, Sequence[int]] | None = None,
    pseudo_labels: np.ndarray | None = None,
    predict_config: PredictConfig | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    rgb: bool | None = None,
) -> TrainingRun:
    """Prepare a ``mixed`` run: full masks in ``labels``, scribbles in ``weak_labels``,
    points ``(slice, y, x, class)`` in ``points`` and / or slice tags ``{slice: classes}``.

    ``teacher`` gives the classes, the normalisation, the validation slices and (with
    ``init_from_teacher``) the starting weights; ``accepted``, ``pseudo_labels`` and
    ``predict_config`` are not used (the student branch learns from the weak labels, not from
    pseudo-labels). ``resume_from`` continues a ``mixed`` checkpoint with its own settings.

    Raises
    ------
    ValueError
        Mismatched shapes, or weak classes (or tagged ones) no full mask has.
    """
    from ..training import TrainingRun

    del accepted, pseudo_labels, predict_config
    torch_device = select_device(device)
    checkpoint = None
    if resume_from is not None:
        student, checkpoint, strategy_config = load_student(resume_from, NAME, MixedConfig)
        train_config = student.train_config or train_config
    stack, labels_stack, painted = prepare_pair(image, labels, rgb)
    training, validation = teacher_split(teacher, labels_stack, painted, train_config)
    weak = weak_targets(weak_labels, points, labels_stack.shape, teacher.class_ids, strategy_config)
    taken = set(painted.tolist()) | set(validation)
    weak_slices = [int(i) for i in np.flatnonzero((weak >= 0).reshape(len(weak), -1).any(1))]
    weak_slices = [i for i in weak_slices if i not in taken]
    if not weak_slices and not tags:
        logger.warning("mixed: no slice has weak labels only; the student learns the full masks")
    data = StudentData(stack, labels_stack, training, validation, weak_slices, {})
    if checkpoint is None:
        config = dataclasses.replace(
            teacher.model_config.single(), decoders=2, deep_supervision=False
        )
        torch.manual_seed(train_config.seed)
        model = build_model(config)
        source = slice_members(teacher.model)[0]
        from_teacher = strategy_config.init_from_teacher and _same_shape(source, model)
        if from_teacher:
            model.load_teacher(source)
        student = new_student_bundle(
            teacher, model, config, strategy=NAME, strategy_config=strategy_config,
            train_config=train_config, data=data, from_teacher=from_teacher,
        )  # fmt: skip
    full_sampler, weak_sampler = _samplers(data, weak, student, train_config)
    class_weight = None
    if train_config.class_weighting:
        targets = [] if full_sampler is None else list(full_sampler.target_indices)
        class_weight = class_weights_from_labels(targets, len(student.class_ids))
    tag_slices = {int(i): c for i, c in (tags or {}).items() if 0 <= int(i) < len(stack)}
    tag_slices = {i: c for i, c in tag_slices.items() if i not in set(painted.tolist())}
    tag_source = None
    if tag_slices and strategy_config.lambda_tag > 0:
        tag_source = TagSource(
            stack, tag_slices, student.class_ids, student.normalization,
            student.model_config.context_slices,
        )  # fmt: skip
        logger.info("mixed: slice tags on %d slice(s)", len(tag_slices))
    objective = MixedObjective(
        full_sampler, weak_sampler, strategy_config, class_weight, train_config.dice_weight,
        tag_source,
    )  # fmt: skip
    total = student_steps(
        train_config, data, torch_device, bool(student.extra.get("from_teacher")),
        student.model_config,
    )  # fmt: skip
    if checkpoint is not None:
        total = int((checkpoint.get("resume") or {}).get("total_steps") or total)
    reliable = early_stopping_allowed((data.annotated, data.validation))
    run = TrainingRun(
        student, objective, train_config, device=torch_device, total_steps=total,
        validator=student_validator(data, student, torch_device), early_stopping=reliable,
    )  # fmt: skip
    if checkpoint is not None:
        run.restore(checkpoint)
    else:
        describe_student(student, data, total, torch_device)
    return run


def _same_shape(teacher: nn.Module, model: BranchedUNet) -> bool:
    """Whether ``teacher`` is a U-Net whose weights fit ``model``'s encoder and decoder."""
    theirs = {k: v.shape for k, v in teacher.state_dict().items()}
    ours = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("student.")}
    return all(theirs.get(k) == shape for k, shape in ours.items())
