"""Strategy ``kd``: self-training with pixel-wise knowledge distillation (method 1).

The student trains on two kinds of slices:

- the annotated slices the teacher trained on, with their ground truth;
- the *accepted* slices (unannotated slices that passed the quality filter), with the
  teacher's hard prediction as pseudo-label ``y_pseudo``.

Per pixel, ``L = S(z_s, y) + lambda_kd * T^2 * KL(p_t || p_s)`` with ``p = softmax(z / T)``,
each term averaged over pixels. ``S`` is the supervised loss the teacher trained with
(class-weighted cross-entropy, plus soft Dice when ``TrainConfig.dice_weight > 0``; set it to
0 for the paper's plain cross-entropy). Defaults: ``T = 2``, ``lambda_kd = 1``.

Choices (the paper leaves them open):

- **The KD term applies on the accepted slices only** (``KDConfig.kd_on_annotated``, default
  False): the annotated slices learn from their ground truth, which is better than any teacher.
  Switching it on adds the KL term there too, which passes on the teacher's class similarities
  but also pulls the student back towards the teacher's mistakes on those slices (measured on
  the Medaka benchmark with a short-trained teacher: 52 mIoU against the teacher's 56).
- **The teacher's logits are computed on the fly**, on the very augmented patch the student
  sees (teacher in eval mode, no gradient), so the temperature acts on exact logits and no
  probability stack is stored. The pseudo-labels are computed once, on the un-augmented
  slices, by the stack predictor (or taken from the pipeline, which already has them). A
  teacher with views (``ModelConfig.views``) cannot see a patch on its own (its members
  along the other axes need the stack), so its probabilities on the distilled slices are
  predicted once, kept in memory and cut into the same patches as the images
  (:func:`~napari_distill.core.inference.views_probabilities`).
- Unaccepted unannotated slices never contribute; the teacher's validation slices stay held
  out and validate the student against their ground truth.
- **A noisy student** (``KDConfig.noisy_student``, off by default) sees each patch with
  strong brightness, contrast and noise changes on top of the usual augmentation, and trains
  with dropout :data:`NOISY_STUDENT_DROPOUT`; the teacher's logits come from the same patch
  before that noise (self-training's "noisy student", Xie et al. 2020). Geometric changes stay
  shared: the targets must still line up with the pixels.
- Half the patches come from the annotated slices and half from the accepted ones
  (``KDConfig.annotated_share``), however many of each there are: in proportion to their
  numbers, 27 accepted slices beside 5 annotated ones left the ground truth 1 patch in 6 and
  the student drifted below its teacher (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..config import KDConfig, PredictConfig, TrainConfig
from ..device import select_device
from ..inference import views_probabilities
from ..models import MIN_PROBABILITY, ModelBundle
from ..training import (
    Augmentation,
    SliceSampler,
    augment,
    ce_dice_loss,
    class_weights_from_labels,
    early_stopping_allowed,
    kd_loss,
    members_held_out_apart,
)
from .base import (
    StudentData,
    describe_student,
    load_student,
    new_student_bundle,
    prepare_student_data,
    student_model,
    student_steps,
    student_validator,
)

if TYPE_CHECKING:
    from ..training import TrainingRun

logger = logging.getLogger(__name__)

NAME = "kd"

# A noisy student's noise, on top of the sampler's augmentation (normalised intensities):
# contrast, brightness and Gaussian noise two and a half to three times the training
# augmentation's (0.1, 0.1, 0.03), the "strong" against "weak" ratio of the noisy-student recipe.
NOISY_STUDENT_NOISE = Augmentation(
    flips=False, rotations=False, intensity_scale=0.25, intensity_shift=0.25, noise_std=0.1
)
NOISY_STUDENT_DROPOUT = 0.3  # the teacher's default is 0.1 (ModelConfig.dropout)


def student_noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A batch ``(B, C, H, W)`` as a noisy student sees it (:data:`NOISY_STUDENT_NOISE`)."""
    return np.stack([augment({"x": patch}, NOISY_STUDENT_NOISE, rng)["x"] for patch in x])


def kd_objective_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    target: torch.Tensor,
    config: KDConfig,
    *,
    kd_mask: torch.Tensor | None = None,
    class_weight: torch.Tensor | None = None,
    dice_weight: float = 0.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``S(z_s, y) + lambda_kd * kd_loss(z_s, z_t, T, kd_mask)`` and its terms.

    ``target`` holds channel indices (ground truth or pseudo-labels); ``teacher_logits`` may
    be None when ``config.lambda_kd == 0``.
    """
    num_classes = student_logits.shape[1]
    loss, terms = ce_dice_loss(
        student_logits, target, num_classes, class_weight=class_weight, dice_weight=dice_weight
    )
    if config.lambda_kd > 0 and teacher_logits is not None:
        distil = kd_loss(student_logits, teacher_logits, config.temperature, kd_mask)
        terms["kd"] = float(distil.detach())
        loss = loss + config.lambda_kd * distil
    return loss, terms


class KDObjective:
    """Batches from annotated and accepted slices; the loss of :func:`kd_objective_loss`.

    Parameters
    ----------
    teacher:
        The teacher network, on the training device; kept in eval mode, never updated.
    samplers:
        ``[(sampler, kd_weight)]``: where patches come from and the weight of the KD term on
        them (0 switches it off there).
    shares:
        How likely each patch is to come from each sampler (normalised to sum to 1).
    config:
        Temperature and ``lambda_kd``.
    class_weight, dice_weight:
        The supervised term's class weights and Dice weight.
    """

    phase = "kd"

    def __init__(
        self,
        teacher: nn.Module,
        samplers: Sequence[tuple[SliceSampler, float]],
        shares: Sequence[float],
        config: KDConfig,
        class_weight: torch.Tensor | None = None,
        dice_weight: float = 0.0,
    ):
        if not samplers:
            raise ValueError("the student has no slice to train on")
        self.teacher = teacher.eval()
        self.samplers = list(samplers)
        self.config = config
        self.class_weight = class_weight
        self.dice_weight = dice_weight
        self.batch_size = self.samplers[0][0].batch_size
        self.num_classes = self.samplers[0][0].num_classes
        odds = np.asarray(shares, np.float64)
        if odds.shape != (len(self.samplers),) or (odds < 0).any() or odds.sum() <= 0:
            raise ValueError(f"shares {list(shares)} do not fit {len(self.samplers)} sampler(s)")
        self._odds = odds / odds.sum()

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        sources = rng.choice(len(self.samplers), size=self.batch_size, p=self._odds)
        patches = [self.samplers[s][0].sample(rng) for s in sources]
        kd = [self.samplers[s][1] for s in sources]
        x = np.stack([p["x"] for p in patches]).astype(np.float32)
        batch = {
            "x": torch.from_numpy(x),
            "y": torch.from_numpy(np.stack([p["y"] for p in patches]).astype(np.int64)),
            "kd": torch.as_tensor(kd, dtype=torch.float32),
        }
        if self.config.noisy_student:  # the teacher keeps the clean patch
            batch["x_teacher"] = batch["x"]
            batch["x"] = torch.from_numpy(student_noise(x, rng))
        if any("soft" in p for p in patches):
            # The teacher's probabilities computed beforehand (a views teacher, which cannot
            # see a patch on its own); patches without them have no KD term (weight 0).
            shape = (self.num_classes, *patches[0]["y"].shape)
            soft = [p.get("soft", np.zeros(shape, np.float32)) for p in patches]
            batch["soft"] = torch.from_numpy(np.stack(soft).astype(np.float32))
        return batch

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch["x"]
        logits = model(x)
        teacher_logits = None
        kd_mask = None
        if self.config.lambda_kd > 0 and bool(batch["kd"].gt(0).any()):
            if "soft" in batch:  # log-probabilities are logits (as an ensemble's are)
                teacher_logits = batch["soft"].clamp_min(MIN_PROBABILITY).log()
            else:
                self.teacher.eval()  # dropout off: the teacher's best guess, not a sample
                with torch.no_grad():
                    teacher_logits = self.teacher(batch.get("x_teacher", x))
            kd_mask = batch["kd"][:, None, None].expand(-1, *logits.shape[-2:])
        class_weight = None
        if self.class_weight is not None:
            class_weight = self.class_weight.to(logits.device)
        return kd_objective_loss(
            logits,
            teacher_logits,
            batch["y"],
            self.config,
            kd_mask=kd_mask,
            class_weight=class_weight,
            dice_weight=self.dice_weight,
        )


def kd_components(
    teacher: ModelBundle,
    data: StudentData,
    student: ModelBundle,
    train_config: TrainConfig,
    config: KDConfig,
    device: torch.device,
) -> KDObjective:
    """The objective for ``data``: one sampler per kind of slice (annotated, accepted)."""
    augmentation = Augmentation(elastic=train_config.elastic) if train_config.augment else None
    common = {
        "patch_size": student.model_config.image_pixels(train_config.patch_size),
        "batch_size": train_config.batch_size,
        "context_slices": student.model_config.context_slices,
        "foreground_fraction": train_config.foreground_fraction,
        "augmentation": augmentation,
    }
    samplers: list[tuple[SliceSampler, float]] = []
    kd_slices = [*(data.annotated if config.kd_on_annotated else ()), *data.accepted]
    soft: dict[int, np.ndarray] = {}
    if teacher.model_config.views and config.lambda_kd > 0:
        soft = views_probabilities(teacher, data.stack, kd_slices, device)
    if data.annotated:
        truth = {i: data.labels_stack[i] for i in data.annotated}
        sampler = SliceSampler(
            data.stack,
            truth,
            student.class_ids,
            student.normalization,
            soft_targets=soft if soft and config.kd_on_annotated else None,
            **common,
        )
        samplers.append((sampler, 1.0 if config.kd_on_annotated else 0.0))
    if data.accepted:
        sampler = SliceSampler(
            data.stack,
            data.pseudo_labels,
            student.class_ids,
            student.normalization,
            soft_targets=soft or None,
            **common,
        )
        samplers.append((sampler, 1.0))
    shares = [1.0] * len(samplers)
    if len(samplers) == 2:  # annotated and accepted
        shares = [config.annotated_share, 1.0 - config.annotated_share]
    class_weight = None
    if train_config.class_weighting and samplers:
        targets = [t for sampler, _ in samplers for t in sampler.target_indices]
        class_weight = class_weights_from_labels(targets, len(student.class_ids))
    return KDObjective(
        teacher.model.to(device), samplers, shares, config, class_weight, train_config.dice_weight
    )


def build_kd(
    teacher: ModelBundle,
    image: np.ndarray,
    labels: np.ndarray,
    accepted: Sequence[int],
    *,
    train_config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen, never mutated
    strategy_config: KDConfig = KDConfig(),  # noqa: B008
    device: str | torch.device = "auto",
    pseudo_labels: np.ndarray | None = None,
    predict_config: PredictConfig | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    rgb: bool | None = None,
) -> TrainingRun:
    """Prepare a ``kd`` student run (then iterate ``run.steps()``; ``run.save(path)``).

    Parameters
    ----------
    teacher:
        The trained teacher (its classes, normalisation, slice split and weights).
    image, labels:
        The data the teacher was trained on (labels: ground truth on annotated slices).
    accepted:
        Unannotated slices to learn from with pseudo-labels (annotated ones are ignored here).
    train_config:
        Steps (None: from the training pixels, see
        :func:`~napari_distill.core.training.auto_steps`), batch, patches, learning rate, seed...
    strategy_config:
        Temperature, ``lambda_kd``, initialisation and student size.
    device:
        Where to train.
    pseudo_labels:
        The teacher's predicted labels ``(N, H, W)`` if already computed.
    predict_config:
        Tiling for computing pseudo-labels and for validation.
    resume_from:
        A student checkpoint written by ``run.save``: continue it; its own train and strategy
        configs and accepted slices are used, ``train_config``, ``strategy_config`` and
        ``accepted`` are ignored.
    rgb:
        Whether the image's last axis is colour (None: guess).

    Raises
    ------
    ValueError
        Mismatched data, unknown classes, slices outside the stack, or no slice to train on.
    CheckpointError
        ``resume_from`` is not a ``kd`` student checkpoint.
    """
    from ..training import TrainingRun  # lazily: core.train imports core.teacher

    torch_device = select_device(device)
    checkpoint = None
    if resume_from is not None:
        student, checkpoint, strategy_config = load_student(resume_from, NAME, KDConfig)
        train_config = student.train_config or train_config
        accepted = student.extra.get("accepted_slices", accepted)
    data = prepare_student_data(
        teacher,
        image,
        labels,
        accepted,
        train_config,
        torch_device,
        pseudo_labels=pseudo_labels,
        predict_config=predict_config,
        rgb=rgb,
    )
    if checkpoint is None:
        model, model_config, from_teacher = student_model(
            teacher,
            strategy_config.init_from_teacher,
            strategy_config.smaller_student,
            train_config.seed,
            larger_student=strategy_config.larger_student,
            dropout=NOISY_STUDENT_DROPOUT if strategy_config.noisy_student else None,
            validator=(
                student_validator(data, teacher, torch_device)
                if teacher.model_config.members > 1 and not members_held_out_apart(teacher)
                else None  # one network, or the first member is the honest start
            ),
        )
        student = new_student_bundle(
            teacher,
            model,
            model_config,
            strategy=NAME,
            strategy_config=strategy_config,
            train_config=train_config,
            data=data,
            from_teacher=from_teacher,
        )
    objective = kd_components(teacher, data, student, train_config, strategy_config, torch_device)
    total = student_steps(
        train_config,
        data,
        torch_device,
        from_teacher=bool(student.extra.get("from_teacher")),
        model_config=student.model_config,
    )
    if checkpoint is not None:
        total = int((checkpoint.get("resume") or {}).get("total_steps") or total)
    # The teacher's rule: one or two validation slices are too noisy to act on. Such a
    # student runs to the end and keeps its final weights, like its teacher; on the Medaka
    # sample (one validation slice) the final weights beat the ones that slice chose by
    # 0.003-0.026 mIoU on the unannotated slices (docs/benchmarks.md, "Students").
    reliable_validation = early_stopping_allowed((data.annotated, data.validation))
    run = TrainingRun(
        student,
        objective,
        train_config,
        device=torch_device,
        total_steps=total,
        validator=student_validator(data, student, torch_device),
        validate_start=bool(student.extra.get("from_teacher")) and reliable_validation,
        early_stopping=reliable_validation,
    )
    if checkpoint is not None:
        run.restore(checkpoint)
        logger.info("resuming %s at step %d of %d", resume_from, run.step, run.total_steps)
    else:
        describe_student(student, data, total, torch_device)
    return run
