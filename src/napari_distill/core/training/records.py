"""What a :class:`~napari_distill.core.training.TrainingRun` yields and what it trains on: the
:class:`TrainStep` record of every step, the :class:`Objective` protocol a training strategy
implements, and the :data:`Validator` that scores a model. Re-exported by ``core.train``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class TrainStep:
    """Progress after one optimiser step (cheap to make; the GUI draws it, the CLI logs it).

    Attributes
    ----------
    step:
        Steps done so far (1 after the first).
    total_steps:
        The planned number of steps.
    loss:
        The training loss of this step.
    lr:
        The learning rate used for this step.
    elapsed_s:
        Seconds of training so far (time spent inside the loop, across resumes).
    eta_s:
        Estimated seconds to the planned end; None before it can be estimated.
    val_score:
        Mean Dice over foreground classes on the validation slices; None when not validated at
        this step.
    best_score:
        The best validation score so far (None before the first validation).
    phase:
        What the objective is doing (``"train"`` unless the objective says otherwise).
    logs:
        The loss terms, e.g. ``{"ce": ..., "dice": ...}``.
    """

    step: int
    total_steps: int
    loss: float
    lr: float
    elapsed_s: float
    eta_s: float | None
    val_score: float | None
    best_score: float | None
    phase: str = "train"
    logs: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """What a training strategy provides to :class:`TrainingRun`.

    Optional hooks, called when the objective defines them: ``before_step(step, total_steps)``
    (ramp-ups; ``step`` is the 0-based index of the coming step, also right after a resume),
    ``after_step(step, total_steps)`` (e.g. an EMA teacher update after the optimiser step),
    and a ``phase`` attribute copied into :attr:`TrainStep.phase`.
    """

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """A training batch of CPU tensors (the run moves them to the device)."""
        ...

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The scalar loss to minimise and its terms as floats."""
        ...


Validator = Callable[[nn.Module], float]
"""Scores a model (higher is better), e.g. mean foreground Dice on validation slices."""
