"""Training the cell model: the supervised objective and the loop, a generator of TrainStep.

Every step trains both heads that learn from pixels: the nucleus net on random patches of the
annotated fields and the cell net on windows around their painted nuclei; the loss is their
sum (cross-entropy + soft Dice each, so the small nucleus class is not drowned by background).
A strategy (``mean-teacher``) wraps the supervised objective and adds its terms; the loop calls
its ``before_step`` / ``after_step`` hooks (ramp-up, EMA update) like
:class:`~napari_distill.core.training.TrainingRun` does, and yields the same records, so the
CLI's bars and the widgets' curves draw it unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Generator, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.cells import CellModel, CellModelConfig, save_cell_model
from .cells_data import CellData, cell_crops, jitter_intensity, nucleus_patches
from .records import TrainStep
from .schedule import lr_at

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CellTrainConfig:
    """How the cell model is trained (every value a setting with its unit)."""

    steps: int = field(default=300, metadata={"help": "Optimiser steps."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak AdamW learning rate."})
    patch_size: int = field(default=128, metadata={"help": "Side of a nucleus patch (pixels)."})
    nucleus_batch: int = field(default=4, metadata={"help": "Nucleus patches per step."})
    cell_batch: int = field(default=8, metadata={"help": "Cell windows per step."})
    jitter: float = field(
        default=0.15, metadata={"help": "Per-channel gain / offset jitter of the inputs."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed of weights and batches."})
    max_minutes: float | None = field(default=None, metadata={"help": "Time limit (minutes)."})

    def __post_init__(self) -> None:
        if self.steps < 1 or self.learning_rate <= 0 or self.nucleus_batch < 1:
            raise ValueError(f"invalid cell training settings: {self}")


def dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice over the foreground classes (mean), ``target`` class indices."""
    ce = F.cross_entropy(logits, target)
    probs = torch.softmax(logits, 1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1 - ((2 * inter + 1) / (denom + 1)).mean()
    return ce + dice


def with_jitter(x: torch.Tensor, n_image: int, rng: np.random.Generator, amount: float):
    """Jitter only the first ``n_image`` channels (the image, not the nucleus markers)."""
    if amount <= 0:
        return x
    return torch.cat([jitter_intensity(x[:, :n_image], rng, amount), x[:, n_image:]], dim=1)


class CellObjective(Protocol):
    """What the loop needs: batches and a loss; optional ``before_step`` / ``after_step`` hooks,
    extra ``parameters()`` to optimise (e.g. feature adaptors) and a ``phase``."""

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]: ...

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]: ...


class SupervisedCellObjective:
    """Both heads on the annotated fields."""

    phase = "supervised"

    def __init__(self, data: CellData, model_config: CellModelConfig, config: CellTrainConfig):
        self.data = data
        self.model_config = model_config
        self.config = config
        self._images = [f.image for f in data.fields]
        self._targets = [f.nucleus_target for f in data.fields]

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.model_config.in_channels
        x, y = nucleus_patches(
            self._images, rng, self.config.patch_size, self.config.nucleus_batch, self._targets
        )
        cx, cy = cell_crops(self.data, rng, self.model_config, self.config.cell_batch)
        return {
            "nucleus_x": with_jitter(x, c, rng, self.config.jitter),
            "nucleus_y": y,
            "cell_x": with_jitter(cx, c, rng, self.config.jitter),
            "cell_y": cy,
        }

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        nucleus_logits, _ = model.nuclei(batch["nucleus_x"])
        cell_logits, _ = model.cells(batch["cell_x"])
        nucleus = dice_ce(nucleus_logits, batch["nucleus_y"])
        cell = dice_ce(cell_logits, batch["cell_y"])
        return nucleus + cell, {"nuclei": float(nucleus.detach()), "cells": float(cell.detach())}


class CellTrainingRun:
    """A resumable run of the cell model: ``steps()`` yields a TrainStep per optimiser step;
    stopping = no longer iterating; calling ``steps()`` again continues."""

    def __init__(
        self,
        model: CellModel,
        objective: CellObjective,
        config: CellTrainConfig,
        *,
        device: str | torch.device = "cpu",
        start_step: int = 0,
        extra: dict[str, Any] | None = None,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.objective = objective
        self.config = config
        self.total_steps = int(config.steps)
        self.step = int(start_step)
        more: Iterable[nn.Parameter] = getattr(objective, "parameters", lambda: [])()
        self.optimizer = torch.optim.AdamW(
            [*self.model.parameters(), *more], lr=config.learning_rate, weight_decay=1e-4
        )
        self.rng = np.random.default_rng(config.seed)
        self.history: list[TrainStep] = []
        self.extra = dict(extra or {})
        self.earlier_losses: list[float] = []  # of the steps before a resume from a file
        self._elapsed = 0.0

    def steps(self) -> Generator[TrainStep, None, CellModel]:
        """Train to ``config.steps`` (or the time limit), yielding a record per step."""
        budget = None if self.config.max_minutes is None else 60 * self.config.max_minutes
        while self.step < self.total_steps:
            if budget is not None and self._elapsed >= budget:
                logger.info("cell training stopped at step %d: time limit", self.step)
                break
            started = time.perf_counter()
            lr = lr_at(self.step, self.total_steps, self.config.learning_rate)
            loss, logs = self._optimise(lr)
            self.step += 1
            self._elapsed += time.perf_counter() - started
            remaining = self.total_steps - self.step
            record = TrainStep(
                step=self.step,
                total_steps=self.total_steps,
                loss=loss,
                lr=lr,
                elapsed_s=self._elapsed,
                eta_s=self._elapsed / self.step * remaining,
                val_score=None,
                best_score=None,
                phase=str(getattr(self.objective, "phase", "train")),
                logs=logs,
            )
            self.history.append(record)
            yield record
        return self.model

    def _optimise(self, lr: float) -> tuple[float, dict[str, float]]:
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        before = getattr(self.objective, "before_step", None)
        if before is not None:
            before(self.step, self.total_steps)
        batch = {k: v.to(self.device) for k, v in self.objective.batch(self.rng).items()}
        loss, logs = self.objective.loss(self.model, batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"cell training diverged at step {self.step} (loss {value})")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        after = getattr(self.objective, "after_step", None)
        if after is not None:
            after(self.step, self.total_steps)
        return value, logs

    def training_state(self) -> dict[str, Any]:
        """Everything besides the model's weights that the next step depends on: optimiser,
        random states (the batches' and torch's), time spent, and the objective's own state
        (a mean teacher's EMA networks and adaptors), so a resumed run takes the same steps."""
        state: dict[str, Any] = {
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "elapsed_s": self._elapsed,
        }
        objective_state = getattr(self.objective, "state_dict", None)
        if objective_state is not None:
            state["objective"] = objective_state()
        return state

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`training_state` (the model's weights are loaded already)."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self._elapsed = float(state.get("elapsed_s", 0.0))
        load_objective = getattr(self.objective, "load_state_dict", None)
        if load_objective is not None and "objective" in state:
            load_objective(state["objective"])

    def save(self, path: str | Path) -> Path:
        """The model, its step, the run's settings and its training state in one checkpoint
        dict: a stopped run saved here resumes where it was (``resume_cell_run``)."""
        extra = {**self.extra, "train_config": asdict(self.config)}
        extra["loss"] = [*self.earlier_losses, *(r.loss for r in self.history)]
        return save_cell_model(path, self.model, self.step, extra, self.training_state())


def new_cell_model(model_config: CellModelConfig, seed: int) -> CellModel:
    """A freshly initialised model (seeded, so runs repeat)."""
    torch.manual_seed(seed)
    return CellModel(model_config)
