"""What supervised training optimises and how it is validated.

:class:`SupervisedObjective` (class-weighted CE + soft Dice on patches) is the teacher's loss
and, with pseudo-labels as targets, the students' supervised term; :class:`SliceValidator`
(mean Dice of whole-slice predictions) validates teachers and students alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import PredictConfig
from .data import SliceSampler
from .inference import predict_slice_probabilities
from .losses import ce_dice_loss
from .metrics import mean_dice
from .models import ensemble_members
from .preprocess import Normalization, labels_to_indices, slice_input


class SupervisedObjective:
    """Class-weighted cross-entropy plus soft Dice on patches from a :class:`SliceSampler`.

    Pixels with weight 0 in the batch's ``"weight"`` (if any) are ignored by both terms. A
    model with deep-supervision heads (``ModelConfig.deep_supervision``) adds the same loss
    on each head's logits, upsampled to the patch, weighted 1/2 for the finest auxiliary level,
    1/4 for the next and so on (nnU-Net's weights); the record reports the main head's terms.

    For an ensemble (``members > 1``) each step draws one batch per member; the loss is the
    sum of each member's loss on its own batch (the members share no weights, so each learns
    as if trained alone, from its own patches); the record reports the members' mean terms.
    """

    def __init__(
        self,
        sampler: SliceSampler,
        class_weight: torch.Tensor | None = None,
        dice_weight: float = 1.0,
        members: int = 1,
    ):
        if members < 1:
            raise ValueError(f"members must be >= 1, got {members}")
        self.sampler = sampler
        self.num_classes = sampler.num_classes
        self.class_weight = class_weight
        self.dice_weight = dice_weight
        self.members = members

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch, or the members' batches one after the other along the first axis."""
        if self.members == 1:
            return self.sampler.batch(rng)
        batches = [self.sampler.batch(rng) for _ in range(self.members)]
        return {key: torch.cat([batch[key] for batch in batches]) for key in batches[0]}

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        networks = ensemble_members(model)
        if len(networks) == 1:
            return self._network_loss(model, batch)
        if len(networks) != self.members:
            raise ValueError(
                f"the objective draws batches for {self.members} member(s), the model has "
                f"{len(networks)}"
            )
        chunks = {key: value.chunk(len(networks)) for key, value in batch.items()}
        total = None
        parts: dict[str, float] = {}
        for index, network in enumerate(networks):
            member_loss, member_parts = self._network_loss(
                network, {key: values[index] for key, values in chunks.items()}
            )
            total = member_loss if total is None else total + member_loss
            for name, value in member_parts.items():
                parts[name] = parts.get(name, 0.0) + value / len(networks)
        assert total is not None
        return total, parts

    def _network_loss(
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


class SliceValidator:
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

    def __call__(self, model: nn.Module) -> float:
        score = mean_dice(
            self.predict(model),
            self._truth,
            class_ids=range(self.num_classes),
            ignore_background=True,
        )
        return 0.0 if np.isnan(score) else score
