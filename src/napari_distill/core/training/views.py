"""Training a member of a views teacher: the objective and the validator along an axis.

A member slicing along axis 1 or 2 sees every slice of the stack as a painted *row* of its
own slices (:mod:`napari_distill.core.inference.views`); its loss weighs the painted rows 1
and every other row 0, and it is validated on the held-out slices' rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..config import PredictConfig, TrainConfig
from ..inference import predict_slice_probabilities, row_bands, view_of
from ..models import ModelBundle
from ..preprocess import Normalization, labels_to_indices, slice_input
from .losses import class_weights_from_labels
from .objectives import DiceValidator, SupervisedObjective
from .sampler import Augmentation, SliceSampler


def view_objective(
    stack: np.ndarray,
    labels_stack: np.ndarray,
    training: Sequence[int],
    axis: int,
    bundle: ModelBundle,
    train_config: TrainConfig,
    augmentation: Augmentation | None,
) -> SupervisedObjective:
    """The supervised objective of a member slicing along ``axis`` (1 or 2).

    Its slices are every slice of the view; their rows from the ``training`` slices carry
    the painted labels and weigh 1, all other rows weigh 0. The class weights come from the
    training slices themselves (the view's unpainted rows would count as background).
    """
    training = sorted(int(i) for i in training)
    known = np.zeros(labels_stack.shape, dtype=labels_stack.dtype)
    known[training] = labels_stack[training]
    view_labels = view_of(known, axis)
    view_stack = view_of(stack, axis)
    row_weight = np.zeros(view_labels.shape[1:], np.float32)
    row_weight[training, :] = 1.0  # one array shared by every slice of the view
    slices = range(view_stack.shape[0])
    sampler = SliceSampler(
        view_stack,
        {j: view_labels[j] for j in slices},
        bundle.class_ids,
        bundle.normalization,
        patch_size=bundle.model_config.image_pixels(train_config.patch_size),
        batch_size=train_config.batch_size,
        context_slices=bundle.model_config.context_slices,
        foreground_fraction=train_config.foreground_fraction,
        augmentation=augmentation,
        weights=dict.fromkeys(slices, row_weight),
    )
    class_weight = None
    if train_config.class_weighting:
        painted = [labels_to_indices(labels_stack[i], bundle.class_ids) for i in training]
        class_weight = class_weights_from_labels(painted, len(bundle.class_ids))
    return SupervisedObjective(sampler, class_weight, train_config.dice_weight)


class ViewValidator(DiceValidator):
    """Mean Dice on validation slices of a member that slices the stack along ``axis``.

    Each slice of the view is predicted over a band of rows around the validation slices
    (:func:`row_bands`, inputs prepared once) and the validation slices' rows are scored
    together, as :class:`~napari_distill.core.training.SliceValidator` scores slices.
    """

    def __init__(
        self,
        stack: np.ndarray,
        labels_stack: np.ndarray,
        slices: Sequence[int],
        class_ids: tuple[int, ...],
        normalization: Normalization,
        device: torch.device,
        axis: int,
        margin: int,
        context_slices: int = 0,
        predict_config: PredictConfig | None = None,
    ):
        self.slices = sorted(int(i) for i in slices)
        self.axis = axis
        self.device = device
        self.predict_config = predict_config or PredictConfig()
        self.num_classes = len(class_ids)
        self._bands = []
        for start, stop in row_bands(self.slices, margin, stack.shape[0]):
            band = view_of(stack[start:stop], axis)
            inputs = [slice_input(band, j, normalization, context_slices) for j in range(len(band))]
            rows = [i - start for i in self.slices if start <= i < stop]
            self._bands.append((inputs, rows))
        self._truth = np.stack(
            [labels_to_indices(np.asarray(labels_stack[i]), class_ids) for i in self.slices]
        )

    def predict(self, model: nn.Module) -> np.ndarray:
        """Channel-index predictions ``(n_slices, H, W)`` of the validation slices."""
        parts = []
        for inputs, rows in self._bands:
            per_slice = [
                predict_slice_probabilities(model, x, self.predict_config, self.device)[:, rows]
                for x in inputs
            ]
            # (K, rows, other) per view slice -> (K, rows, H, W) with the view's axis back
            parts.append(np.stack(per_slice, axis=self.axis + 1).argmax(0))
        return np.concatenate(parts)
