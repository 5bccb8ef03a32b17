"""The model a dock widget trains: start, Stop, Resume, Save and Load, shared by Teacher and
Student.

A :class:`TrainingSession` holds the last :class:`~napari_distill.core.training.TrainingRun` (its
best weights survive a Stop), the model Predict and Save use, and a loaded checkpoint that
Resume continues. It drives the widget's :class:`TrainingPanel` and :class:`WorkerRunner`; the
widget only says how to start a new run and what to refresh afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from napari_distill._widgets.common.handoff import ask_load_model, ask_save_model
from napari_distill._widgets.common.training_panel import TrainingPanel, can_resume
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.models import ModelBundle, save_checkpoint
from napari_distill.core.training import TrainingRun, TrainStep

OUTCOME_TEXT = {
    "returned": "Training finished",
    "aborted": "Training stopped",
    "errored": "Training failed",
}
STOP_REASON_TEXT = {
    None: "Resume continues",
    "completed": "all steps done",
    "early_stopping": "validation stopped improving",
    "time_budget": "time budget reached",
}


def starting_text(run: TrainingRun) -> str:
    """What the status line says when a run starts: how long, where, and whether it may stop
    early."""
    message = f"Training {run.total_steps} steps on {run.device} from step {run.step}."
    if run.validator is not None and not run.early_stopping:
        message += " Too few validation slices to stop early on: it runs to the end."
    return message


def ending_text(outcome: str, run: TrainingRun | None) -> str:
    """What the status line says when a run ends: where, why, and which weights are kept."""
    message = OUTCOME_TEXT[outcome]
    if run is None or outcome == "errored":
        return message + "."
    reason = STOP_REASON_TEXT.get(run.stop_reason, str(run.stop_reason))
    message += f" at step {run.step} of {run.total_steps} ({reason})"
    if run.best_step is not None and run.best_score is not None:
        best = "the starting weights" if run.best_step == 0 else f"step {run.best_step}"
        message += f"; keeping {best} (validation Dice {run.best_score:.3f})"
    return message + "."


class TrainingSession:
    """Training state of one widget.

    Parameters
    ----------
    runner, panel:
        The widget's worker runner and training panel (Train, Stop, Resume, curves).
    role:
        ``"teacher"`` or ``"student"``: the kind of checkpoint and the words in messages.
    on_finished:
        Called on the GUI thread after a run ends (finished, stopped or failed) and after a
        load, to refresh the widget's model description and buttons.
    """

    def __init__(
        self, runner: WorkerRunner, panel: TrainingPanel, role: str, on_finished: Callable[[], None]
    ) -> None:
        self.runner, self.panel, self.role = runner, panel, role
        self.on_finished = on_finished
        self.run: TrainingRun | None = None  # the last run: its best model survives a Stop
        self.bundle: ModelBundle | None = None  # the model Predict and Save use
        self.resume_path: Path | None = None  # a loaded checkpoint Resume continues

    @property
    def resumable(self) -> bool:
        """A stopped run, or a loaded checkpoint, that Resume can continue."""
        return can_resume(self.run) or (self.run is None and self.resume_path is not None)

    def start(
        self,
        function: Callable[..., Generator[TrainingRun | TrainStep, None, ModelBundle]],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Train a new run in a worker; ``function`` yields the run first, then its steps."""
        self.run = None
        self._start_worker(function, *args, **kwargs)

    def resume(self, start_from_file: Callable[[Path], None]) -> None:
        """Continue the stopped run, else the loaded checkpoint (``start_from_file(path)``)."""
        from napari.utils import notifications

        if can_resume(self.run):
            self.panel.set_running(True)
            self.panel.set_status(f"Resuming at step {self.run.step}...")
            self._start_worker(self.run.steps)
        elif self.resume_path is not None:
            start_from_file(self.resume_path)
        else:
            notifications.show_error(
                f"Nothing to resume: stop a training run, or load a saved {self.role}."
            )

    def save(self, parent: Any) -> None:
        """Ask for a file and save the model (a resumable checkpoint after training)."""
        from napari.utils import notifications

        bundle, run = self.bundle, self.run
        if bundle is None:
            notifications.show_error(f"There is no {self.role} to save yet: train or load one.")
            return
        save = run.save if run is not None else (lambda path: save_checkpoint(path, bundle))
        ask_save_model(parent, f"Save {self.role}", f"{self.role}.pt", save)

    def load(self, parent: Any) -> bool:
        """Ask for a checkpoint of this role; True when one was loaded (Resume continues it)."""
        loaded = ask_load_model(parent, f"Load {self.role}", self.role)
        if loaded is None:
            return False
        (self.bundle, self.resume_path), self.run = loaded, None
        return True

    # ------------------------------------------------------------------ worker callbacks
    def _start_worker(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.runner.start(
            function,
            *args,
            on_yield=self._on_record,
            on_return=self._on_return,
            on_finish=self._on_finish,  # progress: the panel's own bar (see WorkerRunner)
            error_message=f"{self.role.capitalize()} training failed",
            **kwargs,
        )

    def _on_record(self, record: TrainingRun | TrainStep) -> None:
        if isinstance(record, TrainingRun):
            self.run = record
            self.resume_path = None  # the run now holds the loaded checkpoint's state
            self.panel.set_status(starting_text(record))
        else:
            self.panel.show_step(record)

    def _on_return(self, bundle: ModelBundle) -> None:
        self.bundle = bundle

    def _on_finish(self, outcome: str) -> None:
        if outcome == "aborted" and self.run is not None:
            self.bundle = self.run.best_bundle()  # Stop keeps the best model so far
        self.panel.finish(ending_text(outcome, self.run))
        self.on_finished()


class SessionControls:
    """What the Train and Resume buttons do, and the run and model a dock's session holds:
    the same in the Teacher and Student docks, which provide ``session``, their own
    ``_start_training(resume_from)`` and ``_update_buttons()``."""

    session: TrainingSession

    def _start_training(self, resume_from: Path | None) -> None:  # pragma: no cover
        raise NotImplementedError

    def _update_buttons(self) -> None:  # pragma: no cover
        raise NotImplementedError

    def train(self) -> None:
        """Start a new run on the chosen inputs (the Train button)."""
        self._start_training(resume_from=None)

    def resume(self) -> None:
        """Continue the stopped run, or the loaded checkpoint (the Resume button)."""
        self.session.resume(lambda path: self._start_training(resume_from=path))
        self._update_buttons()

    @property
    def run(self) -> TrainingRun | None:
        """The last training run (its best model survives a Stop)."""
        return self.session.run

    @property
    def bundle(self) -> ModelBundle | None:
        """The model Predict, Save and Export use."""
        return self.session.bundle
