"""The training panel shared by the Teacher, Quality and Student widgets.

A view only: Train and Stop buttons, a progress bar, elapsed and remaining time, a status line
and a loss / validation curve (:class:`~napari_distill._widgets.common.plot.CurvePlot`), fed by
:class:`~napari_distill.core.training.TrainStep` records (any object with ``step``,
``total_steps``, ``loss``, ``elapsed_s``, ``eta_s``, ``val_score`` and ``best_score``). The
owning widget connects :attr:`TrainingPanel.train_clicked` / :attr:`TrainingPanel.stop_clicked`
to its own logic and a :class:`~napari_distill._widgets.common.workers.WorkerRunner`:

>>> panel = TrainingPanel(score_label="validation Dice")               # doctest: +SKIP
>>> panel.train_clicked.connect(self._train)                           # doctest: +SKIP
>>> panel.stop_clicked.connect(self.runner.stop)                       # doctest: +SKIP
>>> # in _train:  panel.start(); runner.start(run.steps, on_yield=panel.show_step,
>>> #             on_finish=lambda outcome: panel.finish(f"Training {outcome}."))

The training settings form is :class:`~napari_distill._widgets.common.train_settings.TrainSettings`.
"""

from __future__ import annotations

import functools
import math
import threading
from typing import Any

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_distill._widgets.common.plot import CurvePlot
from napari_distill.core.training import TrainingRun, preload_optimizer_modules


@functools.cache
def _preload_in_background() -> None:
    """Once per process, when the first panel opens (see ``preload_optimizer_modules``)."""
    threading.Thread(
        target=preload_optimizer_modules, name="napari-distill preload", daemon=True
    ).start()


# Most updates of the bars, labels and curve per second during a run. Each is a repaint, and
# in a window holding napari's OpenGL canvas a repaint composes the whole window: with software
# OpenGL (Xvfb, remote desktops) tens of ms of the GUI thread on a busy machine. Twice a second
# is smooth enough for a run of minutes.
UPDATES_PER_S = 2.0
# The progress bar's text: before any run, while running (Qt fills in %v and %m), and after a
# run that ended before its first step (e.g. stopped while preparing the data).
IDLE_TEXT = "not started"
STEP_TEXT = "step %v / %m"
NO_STEP_TEXT = "no step run"


def format_duration(seconds: float | None) -> str:
    """``"1:02:03"``, ``"2:03"`` or ``"--"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def can_resume(run: TrainingRun | None) -> bool:
    """Whether Resume can continue ``run``: stopped by the user before its last step."""
    return run is not None and run.stop_reason is None and run.step < run.total_steps


class TrainingPanel(QWidget):
    """Train / Stop, progress, times and curves of one training run.

    Parameters
    ----------
    train_text:
        Text of the Train button (e.g. "Train teacher").
    score_label:
        Label of the validation curve's axis; None plots the loss only.
    resume_tooltip:
        When given, a Resume button (``resume_button``) sits beside Stop, with this tooltip.
    plot_hint:
        What the curve plot says before the first step (default: built from its labels).
    parent:
        The parent widget.

    Signals
    -------
    train_clicked:
        The user pressed Train.
    stop_clicked:
        The user pressed Stop.
    resume_clicked:
        The user pressed Resume.
    """

    train_clicked = Signal()
    stop_clicked = Signal()
    resume_clicked = Signal()

    def __init__(
        self,
        train_text: str = "Train",
        score_label: str | None = "validation Dice",
        resume_tooltip: str | None = None,
        plot_hint: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        _preload_in_background()
        self.train_button = QPushButton(train_text)
        self.train_button.setToolTip("Start training in the background; the viewer stays usable.")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip(
            "Stop after the current step; the best model so far is kept and can be used."
        )
        self.stop_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(IDLE_TEXT)
        self.progress_bar.setTextVisible(True)
        self.time_label = QLabel(self._time_text(None, None))
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        # the panel's update timer redraws the plot, so one repaint shows labels and curves
        self.plot = CurvePlot(
            y_label="loss", y2_label=score_label, max_redraws_per_s=None, hint=plot_hint
        )

        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        self.resume_button: QPushButton | None = None
        if resume_tooltip is not None:
            self.resume_button = QPushButton("Resume")
            self.resume_button.setToolTip(resume_tooltip)
            self.resume_button.clicked.connect(self.resume_clicked)
            buttons.addWidget(self.resume_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.time_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.plot)

        self._pending: Any = None
        self._pending_validation: Any = None
        self._update_timer = QTimer(self)
        self._update_timer.setInterval(int(1000 / UPDATES_PER_S))
        self._update_timer.timeout.connect(self._apply_pending)
        self.train_button.clicked.connect(self.train_clicked)
        self.stop_button.clicked.connect(self._stop_pressed)

    # ------------------------------------------------------------------ state
    def set_running(self, running: bool) -> None:
        """Enable Stop and disable Train while running (and the reverse)."""
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)

    def start(self, message: str = "Preparing the training data...") -> None:
        """Clear the curves and bars of the previous run and show the running state."""
        self.plot.clear()
        self._pending = self._pending_validation = None
        self.progress_bar.setRange(0, 0)  # busy until the first step says how many
        self.progress_bar.setValue(0)
        self.time_label.setText(self._time_text(None, None))
        self.status_label.setText(message)
        self.set_running(True)

    def show_step(self, record: Any) -> None:
        """Take one training record (a :class:`~napari_distill.core.training.TrainStep`).

        The curve gets the point now; bars and labels show the latest record at most
        ``UPDATES_PER_S`` times a second (every repaint of the window costs the GUI thread).
        """
        self.plot.append(record.step, y=record.loss, y2=record.val_score)
        self._pending = record
        if record.val_score is not None:
            self._pending_validation = record
        if not self._update_timer.isActive():
            self._update_timer.start()

    def _apply_pending(self) -> None:
        record, validated = self._pending, self._pending_validation
        self._pending = self._pending_validation = None
        if record is None:
            self._update_timer.stop()
            return
        # One repaint for the bar, the labels and the curve: QProgressBar.setValue repaints at
        # once, and each repaint composes the whole window (napari's canvas is OpenGL).
        self.setUpdatesEnabled(False)
        try:
            self._show_record(record, validated)
        finally:
            self.setUpdatesEnabled(True)

    def _show_record(self, record: Any, validated: Any) -> None:
        total = max(1, int(record.total_steps))
        if self.progress_bar.maximum() != total:
            self.progress_bar.setRange(0, total)
            self.progress_bar.setFormat(STEP_TEXT)
            self.plot.set_x_range(total)
        self.progress_bar.setValue(min(int(record.step), total))
        self.time_label.setText(self._time_text(record.elapsed_s, record.eta_s))
        if validated is not None:
            best = validated.best_score
            self.status_label.setText(
                f"step {validated.step}: loss {validated.loss:.3f}, "
                f"validation {validated.val_score:.3f}"
                + ("" if best is None else f" (best {best:.3f})")
            )
        self.plot.flush()

    def finish(self, message: str) -> None:
        """Show the end state: Train enabled again, the final curve drawn, ``message`` shown."""
        self._apply_pending()
        self._update_timer.stop()
        if self.progress_bar.maximum() == 0:  # ended before the first step
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setFormat(NO_STEP_TEXT)
        self.set_running(False)
        self.stop_button.setText("Stop")
        self.status_label.setText(message)
        self.plot.redraw()

    def set_status(self, message: str) -> None:
        """Show ``message`` under the progress bar."""
        self.status_label.setText(message)

    # ------------------------------------------------------------------ internals
    def _stop_pressed(self) -> None:
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stopping...")
        self.stop_clicked.emit()

    @staticmethod
    def _time_text(elapsed_s: float | None, eta_s: float | None) -> str:
        return f"elapsed {format_duration(elapsed_s)}, remaining {format_duration(eta_s)}"
