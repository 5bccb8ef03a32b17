"""The training panel shared by the Teacher, Quality and Student widgets.

A view only: Train and Stop buttons, a progress bar, elapsed and remaining time, a status line
and a loss / validation curve (:class:`~napari_distill._widgets._plot.CurvePlot`), fed by
:class:`~napari_distill.core.train.TrainStep` records (any object with ``step``,
``total_steps``, ``loss``, ``elapsed_s``, ``eta_s``, ``val_score`` and ``best_score``). The
owning widget connects :attr:`TrainingPanel.train_clicked` / :attr:`TrainingPanel.stop_clicked`
to its own logic and a :class:`~napari_distill._widgets._workers.WorkerRunner`:

>>> panel = TrainingPanel(score_label="validation Dice")               # doctest: +SKIP
>>> panel.train_clicked.connect(self._train)                           # doctest: +SKIP
>>> panel.stop_clicked.connect(self.runner.stop)                       # doctest: +SKIP
>>> # in _train:  panel.start(); runner.start(run.steps, on_yield=panel.show_step,
>>> #             on_finish=lambda outcome: panel.finish(f"Training {outcome}."))
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_distill._widgets._plot import CurvePlot


def format_duration(seconds: float | None) -> str:
    """``"1:02:03"``, ``"2:03"`` or ``"--"`` when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "--"
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrainingPanel(QWidget):
    """Train / Stop, progress, times and curves of one training run.

    Parameters
    ----------
    train_text:
        Text of the Train button (e.g. "Train teacher").
    score_label:
        Label of the validation curve's axis; None plots the loss only.
    parent:
        The parent widget.

    Signals
    -------
    train_clicked:
        The user pressed Train.
    stop_clicked:
        The user pressed Stop.
    """

    train_clicked = Signal()
    stop_clicked = Signal()

    def __init__(
        self,
        train_text: str = "Train",
        score_label: str | None = "validation Dice",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
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
        self.progress_bar.setFormat("step %v / %m")
        self.progress_bar.setTextVisible(True)
        self.time_label = QLabel(self._time_text(None, None))
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.plot = CurvePlot(y_label="loss", y2_label=score_label)

        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.time_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.plot)

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
        self.progress_bar.setRange(0, 0)  # busy until the first step says how many
        self.progress_bar.setValue(0)
        self.time_label.setText(self._time_text(None, None))
        self.status_label.setText(message)
        self.set_running(True)

    def show_step(self, record: Any) -> None:
        """Draw one training record (a :class:`~napari_distill.core.train.TrainStep`)."""
        total = max(1, int(record.total_steps))
        if self.progress_bar.maximum() != total:
            self.progress_bar.setRange(0, total)
        self.progress_bar.setValue(min(int(record.step), total))
        self.time_label.setText(self._time_text(record.elapsed_s, record.eta_s))
        self.plot.append(record.step, y=record.loss, y2=record.val_score)
        if record.val_score is not None:
            best = record.best_score
            self.status_label.setText(
                f"step {record.step}: loss {record.loss:.3f}, validation {record.val_score:.3f}"
                + ("" if best is None else f" (best {best:.3f})")
            )

    def finish(self, message: str) -> None:
        """Show the end state: Train enabled again, the final curve drawn, ``message`` shown."""
        if self.progress_bar.maximum() == 0:  # ended before the first step
            self.progress_bar.setRange(0, 1)
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
