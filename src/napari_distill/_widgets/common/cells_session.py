"""The cell model a dock trains: start, Stop, Resume, Save and Load, for the cells task of
the Teacher and Student docks (the cell counterpart of :mod:`.training_session`).

A :class:`CellSession` holds the last :class:`~napari_distill.core.training.cells.CellTrainingRun`
(after a Stop its model is kept and ``steps()`` continues it), the model Predict and Save use,
and a loaded checkpoint that Resume continues on the painted layers (its optimiser, random
states and, for ``mean-teacher``, its EMA teacher come back with it).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from napari_distill._widgets.common.handoff import CHECKPOINT_FILTER, ask_save_model
from napari_distill._widgets.common.training_panel import TrainingPanel
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.models.cells import CellModel, load_cell_model, save_cell_model
from napari_distill.core.training.cells import CellTrainingRun

ENDINGS = {"returned": "Training finished", "aborted": "Training stopped",
           "errored": "Training failed"}  # fmt: skip


def cell_training(
    build: Callable[..., CellTrainingRun], *args: Any, **kwargs: Any
) -> Generator[Any, None, CellModel]:
    """Build a run in the worker (pairing cells with nuclei takes a moment), hand it to the
    caller (first yield, so a Stop keeps it), then train it."""
    run = build(*args, **kwargs)
    yield run
    yield from run.steps()
    return run.model


class CellSession:
    """Training state of a dock's cells task.

    Parameters
    ----------
    runner, panel:
        The task's worker runner and training panel.
    role:
        ``"teacher"`` or ``"student"`` (words in messages, default file name).
    on_finished:
        Called on the GUI thread after a run ends and after a load.
    """

    def __init__(
        self, runner: WorkerRunner, panel: TrainingPanel, role: str, on_finished: Callable[[], None]
    ) -> None:
        self.runner, self.panel, self.role, self.on_finished = runner, panel, role, on_finished
        self.run: CellTrainingRun | None = None
        self.model: CellModel | None = None
        self.loaded: tuple[Path, int, dict] | None = None  # a loaded file: path, step, extra
        self._stopped = False

    @property
    def resumable(self) -> bool:
        """A stopped run, or a loaded checkpoint, that Resume can continue."""
        if self.run is not None:
            return self._stopped and self.run.step < self.run.total_steps
        return self.loaded is not None

    @property
    def step(self) -> int:
        """Steps the model has trained."""
        if self.run is not None:
            return self.run.step
        return 0 if self.loaded is None else self.loaded[1]

    @property
    def extra(self) -> dict:
        """The run's or the loaded file's extras (strategy, settings, painted fields)."""
        if self.run is not None:
            return self.run.extra
        return {} if self.loaded is None else self.loaded[2]

    def start(self, build: Callable[..., CellTrainingRun], *args: Any, **kwargs: Any) -> None:
        """Build and train a run in the worker (``build(*args, **kwargs)``)."""
        self.run, self._stopped = None, False
        self.panel.start()
        self._start_worker(cell_training, build, *args, **kwargs)

    def resume(self, start_from_file: Callable[[Path], None]) -> None:
        """Continue the stopped run, else the loaded checkpoint (``start_from_file(path)``)."""
        if self.run is not None and self.resumable:
            self._stopped = False
            self.panel.set_running(True)
            self.panel.set_status(f"Resuming at step {self.run.step}...")
            self._start_worker(self._continue, self.run)
        elif self.loaded is not None:
            start_from_file(self.loaded[0])

    @staticmethod
    def _continue(run: CellTrainingRun) -> Generator[Any, None, CellModel]:
        yield from run.steps()
        return run.model

    def save(self, parent: Any) -> None:
        """Ask for a file and save the model (with its training state after a run)."""
        run, model = self.run, self.model
        if run is not None:
            ask_save_model(parent, f"Save {self.role}", f"{self.role}_cells.pt", run.save)
        elif model is not None and self.loaded is not None:
            _, step, extra = self.loaded
            ask_save_model(parent, f"Save {self.role}", f"{self.role}_cells.pt",
                           lambda path: save_cell_model(path, model, step, extra))  # fmt: skip

    def load(self, parent: Any) -> bool:
        """Ask for a cell model checkpoint; True when one was loaded (Resume continues it)."""
        from napari.utils.notifications import show_error
        from qtpy.QtWidgets import QFileDialog

        path, _ = QFileDialog.getOpenFileName(parent, f"Load {self.role}", "", CHECKPOINT_FILTER)
        if not path:
            return False
        try:
            model, step, extra = load_cell_model(path)
        except (OSError, ValueError, RuntimeError) as error:
            show_error(f"Could not load a cell model: {error}")
            return False
        self.run, self.model, self.loaded = None, model, (Path(path), step, extra)
        self.on_finished()
        return True

    # ------------------------------------------------------------------ worker callbacks
    def _start_worker(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.runner.start(
            function, *args, on_yield=self._on_record, on_return=self._on_return,
            on_finish=self._on_finish, error_message=f"{self.role.capitalize()} training failed",
            **kwargs,
        )  # fmt: skip

    def _on_record(self, record: Any) -> None:
        if isinstance(record, CellTrainingRun):
            self.run, self.loaded = record, None
            for number, loss in enumerate(record.earlier_losses, start=1):
                self.panel.plot.append(number, y=loss, y2=None)  # the curve before the file
            self.panel.set_status(f"Training {record.total_steps} steps on {record.device} "
                                  f"from step {record.step}.")  # fmt: skip
        else:
            self.panel.show_step(record)

    def _on_return(self, model: CellModel) -> None:
        self.model = model

    def _on_finish(self, outcome: str) -> None:
        run = self.run
        self._stopped = outcome == "aborted"
        if run is not None and outcome != "errored":
            self.model = run.model  # Stop keeps the model as it is: Predict and Save use it
        message = ENDINGS[outcome]
        if run is not None and outcome != "errored":
            message += f" at step {run.step} of {run.total_steps}"
            if self._stopped and run.step < run.total_steps:
                message += " (Resume continues)"
            losses = [r.loss for r in run.history[-10:]]
            if losses:
                message += f"; loss {float(np.mean(losses)):.3f} over the last steps"
        self.panel.finish(message + ".")
        self.on_finished()
