"""Strategy ``mutual``: reliable mutual distillation for noisy masks (method 4, RMD).

Two networks of the teacher's shape train side by side, from different random weights, on the
painted (noisy) masks. Every step both see the same patches, and:

- **co-teaching, per pixel**: each network learns (the teacher's supervised loss, its
  deep-supervision heads included) only on the ``1 - R`` share of each class's pixels where
  its *peer* has the smallest cross-entropy; ``R`` grows
  linearly from 0 to :attr:`MutualConfig.noise_rate` over the first
  :attr:`MutualConfig.ramp_share` of the steps;
- **reliability**: a pixel is reliable for a network when its prediction survives augmentation,
  ``u = sum_c (f(aug(x)) - aug(f(x)))^2`` with ``aug`` a random flip of both axes plus Gaussian
  noise, and after the first :attr:`MutualConfig.warp_after` of the steps also a rotation, a
  zoom and an elastic deformation (resampled on one grid, :mod:`.warps`; pixels that leave the
  patch are never chosen); ``f(aug(x))`` computed with stronger dropout (model augmentation),
  no gradient, and the BatchNorm statistics left alone;
- **mutual distillation**: each network learns ``KL(p_peer || p_self)`` on the share
  ``rho = min(0.8 w, 1)`` of pixels where its peer is most reliable; the peer's probabilities
  are detached (the official code lets gradients into them);
- ``L = L_coteach + lambda_kd * w * L_kd`` per network, ``w = exp(-5 (1 - t)^2)`` with ``t``
  the ramp-up's progress.

Choices: the share is kept per class of the (noisy) mask: selected over all pixels together,
the rare classes' pixels, which have the larger losses, went first, and on the Medaka sample the
pair fell to half the plain network's Dice (docs/benchmarks.md); steps stand for the paper's
epochs; the reliability augmentation follows METHODS.md's schedule, flips (and noise) first,
rotation, zoom and elastic deformation "later", from :attr:`MutualConfig.warp_after` (by
default the end of the ramp-up, when the KL weight has grown); the KL is a mean over the chosen
pixels, so its weight is 1 rather than the paper's 0.0009 (a weight on another reduction); the
pair always starts from scratch (two copies of one teacher would agree on its mistakes). The
pair is a :class:`~napari_distill.core.models.networks.ModelEnsemble` of two members, so a
checkpoint loads and predicts as the average of the two; :func:`mutual_prediction` picks one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import PredictConfig, TrainConfig
from ..device import select_device
from ..models import ModelBundle, build_model, ensemble_members
from ..preprocess import class_ids_from_labels
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
from .configs import MutualConfig
from .warps import Warp, draw_parameters, make_warp, warped_disagreement
from .weak_losses import (
    kl_loss,
    ramp,
    rampup_weight,
    reliability,
    smallest_share,
    smallest_share_per_class,
)

if TYPE_CHECKING:
    from ..training import TrainingRun

logger = logging.getLogger(__name__)

NAME = "mutual"
MAX_RELIABLE_SHARE = 0.8  # rho = min(0.8 w, 1): RMD's share of a peer's pixels distilled


@contextlib.contextmanager
def model_augmentation(network: nn.Module, dropout: float) -> Iterator[None]:
    """Stronger dropout and frozen BatchNorm statistics for a judging pass of ``network``."""
    saved = []
    for module in network.modules():
        if isinstance(module, nn.Dropout | nn.Dropout2d):
            saved.append((module, "p", module.p))
            module.p = max(module.p, dropout)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            saved.append((module, "momentum", module.momentum))
            module.momentum = 0.0  # batch statistics are used, the running ones not changed
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def disagreement(
    network: nn.Module,
    x: torch.Tensor,
    logits: torch.Tensor,
    flips: tuple[bool, bool],
    noise: torch.Tensor,
    dropout: float,
    transform: Warp | None = None,
) -> torch.Tensor:
    """``u`` per pixel ``(B, H, W)``: the network's probabilities on the flipped (and, with
    ``transform``, warped), noisy input (stronger dropout), against its probabilities
    ``softmax(logits)`` on ``x`` augmented the same way; in ``x``'s frame, ``inf`` where a
    warp leaves the patch."""
    dims = [d for d, flip in zip((-2, -1), flips, strict=True) if flip]

    def flip(values: torch.Tensor) -> torch.Tensor:
        return values.flip(dims) if dims else values

    own = torch.softmax(logits.detach().float(), dim=1)
    with torch.no_grad(), model_augmentation(network, dropout):
        if transform is None:
            probabilities = torch.softmax(network(flip(x) + noise).float(), dim=1)
            return reliability(own, flip(probabilities))
        augmented = F.grid_sample(
            flip(x).float(), transform.grid, mode="bilinear", padding_mode="zeros",
            align_corners=False,
        )  # fmt: skip
        probabilities = torch.softmax(network(augmented + noise).float(), dim=1)
        return flip(warped_disagreement(probabilities, flip(own), transform))


def coteaching_masks(
    loss_a: torch.Tensor,
    loss_b: torch.Tensor,
    forget: float,
    target: torch.Tensor | None = None,
    num_classes: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which pixels each network trains on: network A on the ``1 - forget`` share where B's
    loss is smallest, and B where A's is; with ``target``, that share of each class."""
    if target is None:
        return smallest_share(loss_b, 1.0 - forget), smallest_share(loss_a, 1.0 - forget)
    return (
        smallest_share_per_class(loss_b, target, 1.0 - forget, num_classes),
        smallest_share_per_class(loss_a, target, 1.0 - forget, num_classes),
    )


def peer_distillation(
    logits_a: torch.Tensor,
    logits_b: torch.Tensor,
    u_a: torch.Tensor,
    u_b: torch.Tensor,
    share: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``KL(p_b || p_a)`` on B's most reliable ``share`` of pixels and ``KL(p_a || p_b)`` on
    A's; each peer's probabilities are detached, so no gradient reaches a target. Pixels of
    infinite disagreement (warped out of the patch) are never chosen."""
    kd_a = kl_loss(logits_a, logits_b.detach(), smallest_share(u_b, share) & u_b.isfinite())
    kd_b = kl_loss(logits_b, logits_a.detach(), smallest_share(u_a, share) & u_a.isfinite())
    return kd_a, kd_b


class MutualObjective:
    """One batch for both networks; co-teaching plus reliable mutual distillation."""

    phase = "mutual"

    def __init__(
        self,
        sampler: SliceSampler,
        config: MutualConfig,
        class_weight: torch.Tensor | None = None,
        dice_weight: float = 0.0,
    ):
        self.sampler = sampler
        self.config = config
        self.class_weight = class_weight
        self.dice_weight = dice_weight
        self.num_classes = sampler.num_classes
        self.progress = 0.0
        self.fraction = 0.0  # of the planned steps: when the warps join the flips

    def _supervised(
        self,
        logits: torch.Tensor,
        auxiliary: list[torch.Tensor],
        target: torch.Tensor,
        weight: torch.Tensor | None,
        keep: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The teacher's loss on the kept pixels (deep-supervision heads weighted as there)."""
        loss, terms = ce_dice_loss(
            logits, target, self.num_classes, weight, self.dice_weight, ignore_mask=~keep
        )
        for level, extra in enumerate(auxiliary, start=1):
            upsampled = F.interpolate(extra, size=logits.shape[-2:], mode="bilinear")
            loss = (
                loss
                + 0.5**level
                * ce_dice_loss(
                    upsampled, target, self.num_classes, weight, self.dice_weight, ignore_mask=~keep
                )[0]
            )
        return loss, terms

    def before_step(self, step: int, total_steps: int) -> None:
        self.progress = ramp(step, total_steps, self.config.ramp_share)
        self.fraction = step / max(1, total_steps)

    @property
    def warping(self) -> bool:
        """Whether rotation, zoom or elastic deformation judge reliability now."""
        config = self.config
        wanted = (
            config.reliability_rotation > 0
            or config.reliability_zoom > 1
            or config.reliability_elastic > 0
        )
        return wanted and self.fraction >= config.warp_after

    @property
    def forget(self) -> float:
        """The share of pixels each network ignores now."""
        return self.config.noise_rate * self.progress

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        batch = self.sampler.batch(rng)
        noise = rng.standard_normal(batch["x"].shape).astype(np.float32)
        batch["noise"] = torch.from_numpy(noise * np.float32(self.config.reliability_noise))
        batch["flips"] = torch.as_tensor(rng.random(2) < 0.5)
        config = self.config
        batch["warp"] = torch.from_numpy(
            draw_parameters(
                rng, len(noise), config.reliability_rotation, config.reliability_zoom,
                config.reliability_elastic,
            )
        )  # fmt: skip
        return batch

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        a, b = ensemble_members(model)
        x, y = batch["x"], batch["y"]
        (logits_a, aux_a), (logits_b, aux_b) = _forward(a, x), _forward(b, x)
        with torch.no_grad():
            ce_a = F.cross_entropy(logits_a.float(), y, reduction="none")
            ce_b = F.cross_entropy(logits_b.float(), y, reduction="none")
        keep_a, keep_b = coteaching_masks(ce_a, ce_b, self.forget, y, self.num_classes)
        weight = None if self.class_weight is None else self.class_weight.to(x.device)
        loss_a, terms = self._supervised(logits_a, aux_a, y, weight, keep_a)
        loss_b, _ = self._supervised(logits_b, aux_b, y, weight, keep_b)
        total = loss_a + loss_b
        w = rampup_weight(self.progress)
        share = min(MAX_RELIABLE_SHARE * w, 1.0)
        terms["forget"] = self.forget
        if self.config.lambda_kd > 0 and share > 0:
            flips = tuple(bool(f) for f in batch["flips"].tolist())
            noise, dropout = batch["noise"], self.config.reliability_dropout
            transform = make_warp(batch["warp"], *x.shape[-2:]) if self.warping else None
            u_a = disagreement(a, x, logits_a, flips, noise, dropout, transform)
            u_b = disagreement(b, x, logits_b, flips, noise, dropout, transform)
            terms["warped"] = float(transform is not None)
            kd_a, kd_b = peer_distillation(logits_a, logits_b, u_a, u_b, share)
            total = total + self.config.lambda_kd * w * (kd_a + kd_b)
            terms["kd"] = float((kd_a + kd_b).detach()) / 2
        return total, terms


def _forward(network: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and, for a network with deep-supervision heads, their logits too."""
    if not getattr(network, "auxiliary_heads", None):
        return network(x), []
    logits, features = network(x, return_features=True)
    return logits, network.auxiliary_logits(features)


def mutual_prediction(bundle: ModelBundle) -> ModelBundle:
    """The bundle that predicts as its settings say: the pair's average, or one network."""
    chosen = (bundle.extra.get("strategy_config") or {}).get("predict_with", "average")
    members = ensemble_members(bundle.model)
    if chosen == "average" or len(members) != 2:
        return bundle
    member = members[0 if chosen == "first" else 1]
    return dataclasses.replace(bundle, model=member, model_config=bundle.model_config.single())


def build_mutual(
    teacher: ModelBundle,
    image: np.ndarray,
    labels: np.ndarray,
    accepted: Sequence[int] = (),
    *,
    train_config: TrainConfig = TrainConfig(),  # noqa: B008 - frozen, never mutated
    strategy_config: MutualConfig = MutualConfig(),  # noqa: B008
    device: str | torch.device = "auto",
    pseudo_labels: np.ndarray | None = None,
    predict_config: PredictConfig | None = None,
    resume_from: str | os.PathLike[str] | None = None,
    rgb: bool | None = None,
) -> TrainingRun:
    """Prepare a ``mutual`` run on the noisy masks in ``labels`` (every painted slice but the
    teacher's validation slices).

    ``teacher`` (a network trained plainly on the same masks: the control) gives the classes,
    the normalisation, the network's shape and the validation slices; the pair starts from
    scratch. ``accepted``, ``pseudo_labels`` and ``predict_config`` are not used.
    ``resume_from`` continues a ``mutual`` checkpoint with its own settings.

    Raises
    ------
    ValueError
        Mismatched shapes, or classes the teacher does not know.
    """
    from ..training import TrainingRun

    del accepted, pseudo_labels, predict_config
    torch_device = select_device(device)
    checkpoint = None
    if resume_from is not None:
        student, checkpoint, strategy_config = load_student(resume_from, NAME, MutualConfig)
        train_config = student.train_config or train_config
    stack, labels_stack, painted = prepare_pair(image, labels, rgb)
    unknown = sorted(set(class_ids_from_labels(labels_stack, painted)) - set(teacher.class_ids))
    if unknown:
        raise ValueError(
            f"the labels hold class ids {unknown} the teacher was not trained on (it knows "
            f"{list(teacher.class_ids)}): retrain the teacher with these labels first"
        )
    training, validation = teacher_split(teacher, labels_stack, painted, train_config)
    data = StudentData(stack, labels_stack, training, validation, [], {})
    if checkpoint is None:
        config = dataclasses.replace(teacher.model_config.single(), members=2)
        torch.manual_seed(train_config.seed)  # the two members start from different weights
        student = new_student_bundle(
            teacher, build_model(config), config, strategy=NAME,
            strategy_config=strategy_config, train_config=train_config, data=data,
            from_teacher=False,
        )  # fmt: skip
    augmentation = Augmentation(elastic=train_config.elastic) if train_config.augment else None
    sampler = SliceSampler(
        stack,
        {i: labels_stack[i] for i in training},
        student.class_ids,
        student.normalization,
        patch_size=student.model_config.image_pixels(train_config.patch_size),
        batch_size=train_config.batch_size,
        context_slices=student.model_config.context_slices,
        foreground_fraction=train_config.foreground_fraction,
        augmentation=augmentation,
    )
    class_weight = None
    if train_config.class_weighting:
        class_weight = class_weights_from_labels(sampler.target_indices, sampler.num_classes)
    objective = MutualObjective(sampler, strategy_config, class_weight, train_config.dice_weight)
    total = student_steps(train_config, data, torch_device, False, student.model_config)
    if checkpoint is not None:
        total = int((checkpoint.get("resume") or {}).get("total_steps") or total)
    run = TrainingRun(
        student, objective, train_config, device=torch_device, total_steps=total,
        validator=student_validator(data, student, torch_device),
        early_stopping=early_stopping_allowed((data.annotated, data.validation)),
    )  # fmt: skip
    if checkpoint is not None:
        run.restore(checkpoint)
    else:
        describe_student(student, data, total, torch_device)
    return run
