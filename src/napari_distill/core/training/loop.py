"""The training loop: a generator of :class:`TrainStep` records over a pluggable objective.

:class:`TrainingRun` owns the model, the AdamW optimiser, the learning-rate schedule, the best
weights so far and the step counter. ``steps()`` yields one small record per optimiser step and
returns the kept model (the best-validating weights, or the final ones when the schedule
completes: see :attr:`TrainingRun.keeps_final`); the caller stops training by no longer
iterating (the GUI's Stop), and nothing is lost: ``best_bundle()`` and ``save()`` work at any
point, and calling ``steps()`` again continues. What is trained is decided by an
:class:`Objective` (the teacher's supervised loss here, the distillation strategies elsewhere).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import os
import time
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import TrainConfig
from ..device import autocast_dtype
from ..models import ModelBundle, save_checkpoint
from .records import Objective, TrainStep, Validator
from .schedule import lr_at

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingRun",
]

# Consecutive steps with a non-finite loss before training is declared diverged.
MAX_NONFINITE_STEPS = 5


def preload_optimizer_modules() -> None:
    """Import what torch's optimisers import on first use, here rather than in a run.

    The first ``torch.optim.AdamW(...)`` of a process imports ``torch._dynamo`` (about 800
    modules, 1.4 s on a 2-core CPU). Inside a run's set-up, in a worker thread, those imports
    hold Python's GIL and stalled napari's GUI for up to 270 ms; the widgets call this once,
    in a background thread, when they open.
    """
    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def _cpu_copy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


class TrainingRun:
    """One training run, resumable, whose best weights survive an interruption.

    Parameters
    ----------
    bundle:
        The model to train (``bundle.model``, trained in place) and the metadata saved with it;
        ``bundle.step`` is where the run starts.
    objective:
        Provides batches and the loss.
    train_config:
        Learning rate, weight decay, validation cadence, patience, seed, time budget.
    device:
        Where to train.
    total_steps:
        Planned steps (see :func:`auto_steps`).
    validator:
        Scores the model every ``train_config.validate_every`` steps and at the end (higher is
        better); without one the last weights are the best.
    parameters:
        What the optimiser updates (default: every parameter of the model).
    validate_start:
        Also score the starting weights before the first step, so that they are a candidate
        for the best: a model fine-tuned from a trained one (a student from its teacher) then
        never ends worse on the validation slices than where it began.
    early_stopping:
        Whether ``patience`` validations without improvement end the run. Off when the
        validation score is too noisy to act on (a teacher validated on one or two slices: see
        :func:`~napari_distill.core.training.train_teacher`); the run then goes to the end of
        its schedule.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        objective: Objective,
        train_config: TrainConfig,
        *,
        device: torch.device,
        total_steps: int,
        validator: Validator | None = None,
        parameters: Iterable[nn.Parameter] | None = None,
        validate_start: bool = False,
        early_stopping: bool = True,
    ):
        self.meta = bundle
        self.device = torch.device(device)
        self.model = bundle.model.to(self.device)
        self.objective = objective
        self.config = train_config
        self.total_steps = int(total_steps)
        self.validator = validator
        self.step = int(bundle.step)
        self.optimizer = torch.optim.AdamW(
            self.model.parameters() if parameters is None else parameters,
            lr=train_config.learning_rate,
            weight_decay=train_config.weight_decay,
        )
        self.rng = np.random.default_rng(train_config.seed)
        self.history: list[TrainStep] = []
        self.best_score: float | None = None
        self.best_step: int | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._stale_validations = 0
        self._elapsed_before = 0.0  # training seconds of earlier sessions (resumed runs)
        self._elapsed = 0.0  # training seconds in this object; the time budget counts these
        self._session_steps = 0
        self.stop_reason: str | None = None
        self._validate_start = validate_start
        self.early_stopping = early_stopping
        # Mixed precision only on CUDA: fp16 needs a gradient scaler, bf16 does not.
        self._amp_dtype = autocast_dtype(self.device) if self.device.type == "cuda" else None
        self._scaler = torch.amp.GradScaler("cuda") if self._amp_dtype == torch.float16 else None

    # ----------------------------------------------------------------------- the loop
    def steps(self) -> Generator[TrainStep, None, ModelBundle]:
        """Train, yielding a :class:`TrainStep` per step; return the kept model.

        Stops at ``total_steps``, after ``patience`` validations without improvement, or when
        ``max_minutes`` of training have passed. Calling it again continues where it stopped
        (unless it stopped early). A run that completes its schedule keeps its final weights
        when :attr:`keeps_final`; otherwise (and after any other ending) the best-validating
        weights are kept.
        """
        budget_s = None if self.config.max_minutes is None else 60.0 * self.config.max_minutes
        nonfinite = 0
        if self._validate_start and self.validator is not None and self.best_score is None:
            score = self._timed_validate(self.validator)
            logger.info("starting weights score %.4f on the validation slices", score)
        while self.step < self.total_steps and self.stop_reason is None:
            started = time.perf_counter()
            lr = lr_at(self.step, self.total_steps, self.config.learning_rate)
            loss, logs = self._optimise(lr)
            if not math.isfinite(loss):
                nonfinite += 1
                logger.warning("step %d: non-finite loss (%s), update skipped", self.step, loss)
                if nonfinite >= MAX_NONFINITE_STEPS:
                    raise FloatingPointError(
                        f"training diverged: the loss was not finite for {nonfinite} steps in a "
                        f"row; lower the learning rate (now {self.config.learning_rate})"
                    )
            else:
                nonfinite = 0
            self.step += 1
            self._session_steps += 1
            self._elapsed += time.perf_counter() - started
            over_budget = budget_s is not None and self._elapsed >= budget_s
            last = self.step >= self.total_steps or over_budget
            val_score = None
            if self.validator is not None and (last or self.step % self.config.validate_every == 0):
                val_score = self._timed_validate(self.validator)
            if over_budget and self.stop_reason is None and self.step < self.total_steps:
                self.stop_reason = "time_budget"
                logger.info("training stopped at step %d: time budget reached", self.step)
            record = TrainStep(
                step=self.step,
                total_steps=self.total_steps,
                loss=loss,
                lr=lr,
                elapsed_s=self._elapsed_before + self._elapsed,
                eta_s=self._eta(budget_s),
                val_score=val_score,
                best_score=self.best_score,
                phase=str(getattr(self.objective, "phase", "train")),
                logs=logs,
            )
            self.history.append(record)
            yield record
        if self.stop_reason is None:
            self.stop_reason = "completed"
            if self.keeps_final:
                self._keep_final_weights()
        return self.best_bundle()

    @property
    def keeps_final(self) -> bool:
        """Whether a completed run keeps its final weights rather than its best-validating ones.

        ``train_config.keep_final``, except for a run that validated its starting weights (a
        student fine-tuned from its teacher): that one keeps its best, so it never ends worse
        on the validation slices than where it began.
        """
        return self.config.keep_final and not self._validate_start

    def _keep_final_weights(self) -> None:
        # A completed run validates at its last step, so the last record holds its score.
        final_score = self.history[-1].val_score if self.history else None
        if self.validator is None or final_score is None or self.best_step == self.step:
            return
        logger.info(
            "schedule completed: keeping the final weights of step %d (validation %.4f) rather "
            "than step %d (validation %.4f)",
            self.step,
            final_score,
            self.best_step,
            self.best_score,
        )
        self.best_score, self.best_step = final_score, self.step
        self._best_state = _cpu_copy(self.model.state_dict())

    def _optimise(self, lr: float) -> tuple[float, dict[str, float]]:
        """One optimiser step; returns the loss (NaN/inf when the update was skipped)."""
        self.model.train()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        before = getattr(self.objective, "before_step", None)
        if before is not None:
            before(self.step, self.total_steps)
        batch = {
            key: value.to(self.device, non_blocking=True)
            for key, value in self.objective.batch(self.rng).items()
        }
        autocast = (
            torch.autocast(self.device.type, dtype=self._amp_dtype)
            if self._amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            loss, logs = self.objective.loss(self.model, batch)
        value = float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if math.isfinite(value):
            if self._scaler is not None:
                self._scaler.scale(loss).backward()
                self._scaler.step(self.optimizer)
                self._scaler.update()
            else:
                loss.backward()
                self.optimizer.step()
        after = getattr(self.objective, "after_step", None)
        if after is not None:
            after(self.step, self.total_steps)
        return value, logs

    def _timed_validate(self, validator: Validator) -> float:
        """:meth:`_validate`, its time counted as training time (ETA, time budget)."""
        started = time.perf_counter()
        score = self._validate(validator)
        self._elapsed += time.perf_counter() - started
        return score

    def _validate(self, validator: Validator) -> float:
        with torch.inference_mode():
            score = float(validator(self.model))
        self.model.train()
        if not math.isfinite(score):
            score = 0.0
        if self.best_score is None or score > self.best_score:
            self.best_score = score
            self.best_step = self.step
            self._best_state = _cpu_copy(self.model.state_dict())
            self._stale_validations = 0
        else:
            self._stale_validations += 1
            if self.early_stopping and self._stale_validations >= self.config.patience:
                self.stop_reason = "early_stopping"
                logger.info(
                    "early stopping at step %d: no improvement in %d validations (best %.4f at "
                    "step %d)",
                    self.step,
                    self._stale_validations,
                    self.best_score,
                    self.best_step,
                )
        return score

    def _eta(self, budget_s: float | None) -> float | None:
        if self._session_steps == 0:
            return None
        if self.stop_reason is not None or self.step >= self.total_steps:
            return 0.0
        eta = self._elapsed / self._session_steps * (self.total_steps - self.step)
        return eta if budget_s is None else min(eta, max(0.0, budget_s - self._elapsed))

    # ----------------------------------------------------------------------- results
    @property
    def elapsed_s(self) -> float:
        """Seconds of training so far, across resumes."""
        return self._elapsed_before + self._elapsed

    def best_bundle(self) -> ModelBundle:
        """A copy of the model with the best validation weights so far (the current weights
        when nothing was validated yet), in eval mode, on the training device."""
        model = copy.deepcopy(self.model)
        if self._best_state is not None:
            model.load_state_dict(self._best_state)
        model.eval()
        extra = dict(self.meta.extra)
        extra.update(best_score=self.best_score, best_step=self.best_step)
        return dataclasses.replace(
            self.meta, model=model, step=self.step, train_config=self.config, extra=extra
        )

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an atomic checkpoint of the best weights that also resumes this run.

        Loading it with :func:`~napari_distill.core.models.load_checkpoint` gives the best
        model; :func:`resume_training` also restores the last weights, the optimiser, the step,
        the random states and the early-stopping counters.
        """
        bundle = self.best_bundle()
        resume: dict[str, Any] = {
            "total_steps": self.total_steps,
            "best_score": self.best_score,
            "best_step": self.best_step,
            "stale_validations": self._stale_validations,
            "elapsed_s": self.elapsed_s,
            "stop_reason": self.stop_reason,
            "rng_state": self.rng.bit_generator.state,
            "torch_rng_state": torch.get_rng_state(),
            "history": [dataclasses.asdict(record) for record in self.history],
        }
        if self._best_state is not None:
            resume["last_state_dict"] = _cpu_copy(self.model.state_dict())
        return save_checkpoint(path, bundle, self.optimizer.state_dict(), resume)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue the run saved in ``checkpoint`` (a dict written by :meth:`save`) up to its
        planned total; :meth:`set_total_steps` then changes that total."""
        resume = checkpoint.get("resume") or {}
        best_state = checkpoint["state_dict"]
        last_state = resume.get("last_state_dict", best_state)
        self.model.load_state_dict(last_state)
        if checkpoint.get("optimizer_state"):
            self.optimizer.load_state_dict(checkpoint["optimizer_state"])
        self.step = int(checkpoint.get("step", 0))
        self.total_steps = int(resume.get("total_steps", self.total_steps))
        self.best_score = resume.get("best_score")
        self.best_step = resume.get("best_step")
        if self.best_score is not None:
            self._best_state = _cpu_copy(best_state)
        self._stale_validations = int(resume.get("stale_validations", 0))
        self._elapsed_before = float(resume.get("elapsed_s", 0.0))
        if resume.get("stop_reason") == "early_stopping":
            self.stop_reason = "early_stopping"
        if "rng_state" in resume:
            self.rng.bit_generator.state = resume["rng_state"]
        if "torch_rng_state" in resume:
            torch.set_rng_state(resume["torch_rng_state"].cpu())
        self.history = [TrainStep(**record) for record in resume.get("history", [])]

    def set_total_steps(self, total_steps: int, source: str = "the run") -> None:
        """Train up to ``total_steps`` in all: a resumed run given a longer (or shorter)
        schedule.

        The learning rate follows the warm-up + cosine schedule of the new total from the
        step reached (a completed run's rate, near zero, rises again). A completed run, or one
        that stopped early, goes on when given more steps: asking for them overrules the early
        stop. The new total is kept in :attr:`config` (``steps``), so it is saved with the run.

        Raises
        ------
        ValueError
            ``total_steps`` is below the step already reached.
        """
        total = int(total_steps)
        if total < self.step:
            raise ValueError(
                f"{source} has already trained {self.step} steps: a total of {total} steps "
                f"cannot be fewer; ask for at least {self.step}"
            )
        if total > self.step and self.stop_reason in ("early_stopping", "completed"):
            self.stop_reason, self._stale_validations = None, 0
        if total != self.total_steps:
            logger.info("%s: training on to step %d (was %d)", source, total, self.total_steps)
        self.total_steps = total
        self.config = dataclasses.replace(self.config, steps=total)
