"""Copies of a model's weights taken while it trains, spread evenly over the run.

The quality classifier learns from the teacher's earlier, weaker snapshots as well as from the
final teacher (see :mod:`.quality_variants`).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from ..training import TrainStep

R = TypeVar("R")


class SnapshotRecorder:
    """Keeps up to ``max_snapshots`` CPU copies of a model's weights, spread over training.

    Wrap a teacher's ``run.steps()``: ``result = yield from recorder.record(run.steps())``, or
    iterate ``recorder.record(...)`` as you would the steps. A copy is taken at every
    validation, every ``total_steps / (2 max_snapshots)`` steps (for runs without validation)
    and at the planned last step;
    when there are too many, the copy closest in steps to its neighbours is dropped, so the
    kept ones stay evenly spread however long the run turns out to be. The first and the latest
    copies are always kept.

    Parameters
    ----------
    model:
        The module being trained (``run.model``).
    max_snapshots:
        How many copies to keep (each costs the model's size in memory).
    """

    def __init__(self, model: nn.Module, max_snapshots: int = 4):
        if max_snapshots < 1:
            raise ValueError(f"max_snapshots must be >= 1, got {max_snapshots}")
        self.model = model
        self.max_snapshots = max_snapshots
        self._kept: list[tuple[int, dict[str, torch.Tensor]]] = []

    @property
    def steps(self) -> list[int]:
        """Training steps of the kept copies, in order."""
        return [step for step, _ in self._kept]

    @property
    def snapshots(self) -> list[dict[str, torch.Tensor]]:
        """The kept state dicts (CPU tensors), oldest first."""
        return [state for _, state in self._kept]

    def take(self, step: int) -> None:
        """Copy the model's weights now, as step ``step``."""
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self._kept.append((int(step), state))
        while len(self._kept) > self.max_snapshots:
            steps = np.asarray(self.steps, dtype=np.float64)
            # Dropping interior copy i leaves a gap steps[i+1] - steps[i-1]: drop the smallest.
            gaps = steps[2:] - steps[:-2]
            del self._kept[1 + int(np.argmin(gaps))]

    def record(self, steps: Generator[TrainStep, None, R]) -> Generator[TrainStep, None, R]:
        """Pass the records of ``steps`` through, taking copies along the way."""
        while True:
            try:
                record = next(steps)
            except StopIteration as stop:
                return stop.value
            spacing = max(1, record.total_steps // (2 * self.max_snapshots))
            last = record.step >= record.total_steps
            if record.val_score is not None or record.step % spacing == 0 or last:
                self.take(record.step)
            yield record
