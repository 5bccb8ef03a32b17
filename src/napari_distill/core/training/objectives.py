"""What supervised training optimises and how it is validated.

:class:`SupervisedObjective` (class-weighted CE + soft Dice on patches) is the teacher's loss
and, with pseudo-labels as targets, the students' supervised term; :class:`SliceValidator`
(mean Dice of whole-slice predictions) validates teachers and students alike. A teacher
ensemble trains its members side by side, each on its own slices: :class:`EnsembleObjective`
and :class:`EnsembleValidator` hold one of each per member.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import PredictConfig
from ..evaluation import mean_dice
from ..inference import predict_slice_probabilities
from ..models import ensemble_members
from ..preprocess import Normalization, labels_to_indices, slice_input
from .losses import ce_dice_loss
from .sampler import SliceSampler


class SupervisedObjective:
    """Class-weighted cross-entropy plus soft Dice on patches from a :class:`SliceSampler`.

    Pixels with weight 0 in the batch's ``"weight"`` (if any) are ignored by both terms. A
    model with deep-supervision heads (``ModelConfig.deep_supervision``) adds the same loss
    on each head's logits, upsampled to the patch, weighted 1/2 for the finest auxiliary level,
    1/4 for the next and so on (nnU-Net's weights); the record reports the main head's terms.
    """

    def __init__(
        self,
        sampler: SliceSampler,
        class_weight: torch.Tensor | None = None,
        dice_weight: float = 1.0,
    ):
        self.sampler = sampler
        self.num_classes = sampler.num_classes
        self.class_weight = class_weight
        self.dice_weight = dice_weight

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        return self.sampler.batch(rng)

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        deep = bool(getattr(model, "auxiliary_heads", None))
        if deep:
            logits, features = model(batch["x"], return_features=True)
        else:
            logits = model(batch["x"])
        weight = batch.get("weight")
        class_weight = None
        if self.class_weight is not None:
            class_weight = self.class_weight.to(logits.device)

        def loss_of(output: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
            return ce_dice_loss(
                output,
                batch["y"],
                self.num_classes,
                class_weight=class_weight,
                dice_weight=self.dice_weight,
                pixel_weight=weight,
                ignore_mask=None if weight is None else weight <= 0,
            )

        total, parts = loss_of(logits)
        if deep:
            for level, auxiliary in enumerate(model.auxiliary_logits(features), start=1):
                upsampled = F.interpolate(auxiliary, size=logits.shape[-2:], mode="bilinear")
                total = total + 0.5**level * loss_of(upsampled)[0]
        return total, parts


class EnsembleObjective:
    """The members of a :class:`~napari_distill.core.models.networks.ModelEnsemble` trained side by
    side, member ``m`` on ``objectives[m]`` (its own slices and class weights).

    Each step draws one batch per member, kept apart (keys "0/x", "1/x", ...); the loss
    is the sum of each member's loss on its own batch (the members share no weights, so each
    learns as if trained alone, and one optimiser and schedule serve them all); the record
    reports the members' mean terms.
    """

    def __init__(self, objectives: Sequence[SupervisedObjective]):
        if not objectives:
            raise ValueError("an ensemble objective needs one objective per member")
        self.objectives = list(objectives)
        self.num_classes = self.objectives[0].num_classes

    @property
    def members(self) -> int:
        return len(self.objectives)

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        # One entry per member and key ("0/x", "0/y", "1/x", ...): members' patches may differ
        # in shape and keys (a member of a views ensemble has row weights and its own slices).
        return {
            f"{index}/{key}": value
            for index, objective in enumerate(self.objectives)
            for key, value in objective.batch(rng).items()
        }

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        networks = _members_of(model, self.members, "objective draws batches for")
        total = None
        parts: dict[str, float] = {}
        for index, (network, objective) in enumerate(zip(networks, self.objectives, strict=True)):
            prefix = f"{index}/"
            own = {
                key.removeprefix(prefix): value
                for key, value in batch.items()
                if key.startswith(prefix)
            }
            member_loss, member_parts = objective.loss(network, own)
            total = member_loss if total is None else total + member_loss
            for name, value in member_parts.items():
                parts[name] = parts.get(name, 0.0) + value / self.members
        assert total is not None
        return total, parts


def _members_of(model: nn.Module, expected: int, what: str) -> list[nn.Module]:
    networks = ensemble_members(model)
    if len(networks) != expected:
        raise ValueError(f"the {what} {expected} member(s), the model has {len(networks)}")
    return networks


class DiceValidator:
    """Mean Dice over foreground classes of ``predict(model)`` against ``_truth`` (channel
    indices of the validation slices, scored together); subclasses say how they predict."""

    num_classes: int
    _truth: np.ndarray

    def predict(self, model: nn.Module) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, model: nn.Module) -> float:
        score = mean_dice(
            self.predict(model),
            self._truth,
            class_ids=range(self.num_classes),
            ignore_background=True,
        )
        return 0.0 if np.isnan(score) else score


class SliceValidator(DiceValidator):
    """Mean Dice over foreground classes of whole-slice predictions on validation slices.

    The slices' inputs and truths are prepared once; each call predicts them with
    :func:`~napari_distill.core.inference.predict_slice_probabilities` and scores the
    prediction of all slices together (so a class present in one slice only still counts).
    """

    def __init__(
        self,
        image_stack: np.ndarray,
        labels_stack: np.ndarray,
        slices: Sequence[int],
        class_ids: tuple[int, ...],
        normalization: Normalization,
        device: torch.device,
        context_slices: int = 0,
        predict_config: PredictConfig | None = None,
    ):
        self.slices = [int(i) for i in slices]
        self.device = device
        self.predict_config = predict_config or PredictConfig()
        self.num_classes = len(class_ids)
        self._inputs = [
            slice_input(image_stack, i, normalization, context_slices) for i in self.slices
        ]
        self._truth = np.stack(
            [labels_to_indices(np.asarray(labels_stack[i]), class_ids) for i in self.slices]
        )

    def predict(self, model: nn.Module) -> np.ndarray:
        """Channel-index predictions ``(n_slices, H, W)`` of the validation slices."""
        return np.stack(
            [
                predict_slice_probabilities(model, x, self.predict_config, self.device).argmax(0)
                for x in self._inputs
            ]
        )


class EnsembleValidator:
    """The mean of the scores of an ensemble's members, member ``m`` by ``validators[m]``.

    Each member is scored on the slices it held out
    (:func:`~napari_distill.core.training.splits.member_splits`): the ensemble itself has no
    slice that none of its members trained on, so this mean is the honest score it has.
    """

    def __init__(self, validators: Sequence[Callable[[nn.Module], float]]):
        if not validators:
            raise ValueError("an ensemble validator needs one validator per member")
        self.validators = list(validators)

    def __call__(self, model: nn.Module) -> float:
        networks = _members_of(model, len(self.validators), "validator scores")
        scores = [v(network) for network, v in zip(networks, self.validators, strict=True)]
        return float(np.mean(scores))
