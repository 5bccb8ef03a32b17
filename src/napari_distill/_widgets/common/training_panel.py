"""The training panel and training settings shared by the Teacher, Quality and Student widgets.

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

:class:`TrainSettings` is the form for :class:`~napari_distill.core.config.ModelConfig` and
:class:`~napari_distill.core.config.TrainConfig`: the main settings in view, the rest in an
"Advanced" collapsible; its defaults are the dataclasses' defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
from typing import Any

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_distill._widgets.common.plot import CurvePlot
from napari_distill.core.config import (
    MAX_DOWNSAMPLE,
    MAX_MEMBERS,
    VIEW_AXES,
    ModelConfig,
    TrainConfig,
)
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
        self.plot = CurvePlot(y_label="loss", y2_label=score_label, max_redraws_per_s=None)

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


# (config, field, label, minimum, maximum, decimals, tooltip); decimals None = integer.
# An integer field with minimum 0 and a None default shows "auto" / "none" at 0.
MAIN_SETTINGS = (
    ("train", "steps", "Steps", 0, 1_000_000, None,
     "Optimiser steps. 'auto' sizes the run from the painted area and the device; early "
     "stopping ends it sooner when the validation score stops improving (with 3 or more "
     "validation slices)."),
    ("train", "patch_size", "Patch size (px)", 16, 2048, None,
     "Side of the square training patches in pixels at the network's scale (with "
     "Downsample N a patch covers N times as many of the image's pixels per side; clipped "
     "to the slice size)."),
    ("train", "batch_size", "Batch size", 1, 512, None,
     "Patches per step. Larger is steadier but needs more memory."),
    ("model", "base_channels", "Base channels", 2, 512, None,
     "Width of the U-Net's first level (doubled at every level down): capacity vs speed."),
    ("model", "members", "Teachers (ensemble)", 1, MAX_MEMBERS, None,
     "Networks trained side by side, each from its own start, holding out its own "
     "validation slices where it can (so each trains on slices another never saw); the "
     "prediction is the mean of their probabilities. Each costs a whole network's training "
     "and prediction time; several are steadier when one misses an organ by the luck of its "
     "training. The student is always one network."),
    ("model", "context_slices", "2.5D context slices", 0, 16, None,
     "Neighbouring slices on each side fed to the network (0 = plain 2D)."),
    ("model", "downsample", "Downsample (x)", 1, MAX_DOWNSAMPLE, None,
     "The network sees each slice reduced this many times per side and its labels are "
     "scaled back up. For slices much larger than the structures need (organs wider than "
     "about a third of a patch): more context and far less compute per slice; structures "
     "thinner than a few pixels at that scale are lost. 1 = full resolution."),
    ("train", "learning_rate", "Learning rate", 1e-6, 1.0, 5,
     "Peak AdamW learning rate (linear warm-up, then cosine decay)."),
)  # fmt: skip
ADVANCED_SETTINGS = (
    ("model", "depth", "Depth (levels)", 2, 8, None, "Resolution levels of the U-Net."),
    ("model", "dropout", "Dropout", 0.0, 0.9, 2, "Dropout in the deeper encoder stages."),
    ("train", "weight_decay", "Weight decay", 0.0, 1.0, 5, "AdamW weight decay."),
    ("train", "validation_fraction", "Validation fraction", 0.0, 0.9, 2,
     "Share of the annotated slices held out to validate (one at least with 3 or more). 0 "
     "trains on every annotated slice; the score shown is then the fit on those slices."),
    ("train", "validate_every", "Validate every (steps)", 1, 100_000, None,
     "Steps between validations (each draws a point on the validation curve)."),
    ("train", "patience", "Patience (validations)", 1, 10_000, None,
     "Validations without improvement before training stops early."),
    ("train", "foreground_fraction", "Foreground patches", 0.0, 1.0, 2,
     "Share of patches centred on a painted foreground pixel (small organs get seen)."),
    ("train", "dice_weight", "Dice weight", 0.0, 10.0, 2, "Loss = cross-entropy + w * soft Dice."),
    ("train", "max_minutes", "Time budget (min)", 0.0, 10_000.0, 1,
     "Stop after this many minutes of training (0 = no limit)."),
    ("train", "seed", "Seed", 0, 2**31 - 1, None, "Random seed (same seed, same run)."),
)  # fmt: skip
# (config, field, label, tooltip): switches shown with the main settings
MAIN_SWITCHES = (
    ("model", "views", "Views: slice the volume along all three axes",
     "For a volume (a CT stack, not a stack of separate fields): the teachers slice it "
     "along its three axes in turn. Those across the slices see each painted slice edge-on, "
     "as painted rows, and learn how the organs continue between the painted slices; the "
     "prediction is the mean of all three views. Needs at least 3 teachers (Teachers is "
     "raised to 3); costs 3 networks' training and prediction time."),
)  # fmt: skip
# (config, field, label, tooltip)
SWITCHES = (
    ("train", "augment", "Augment", "Flips, 90-degree rotations, intensity changes and noise."),
    ("train", "elastic", "Elastic deformation", "Elastic warps of the patches (slower)."),
    ("train", "class_weighting", "Class weighting",
     "Weigh rare classes up so small organs count."),
    ("train", "keep_final", "Keep final weights",
     "When the run completes its schedule, keep the final weights rather than the step that "
     "scored best on the few validation slices (a run stopped early keeps its best)."),
    ("model", "deep_supervision", "Deep supervision",
     "Also train a classification head on each intermediate decoder level (training only; "
     "prediction uses the main head)."),
)  # fmt: skip


class TrainSettings(QWidget):
    """A form for a :class:`ModelConfig` and a :class:`TrainConfig` with their defaults.

    Parameters
    ----------
    model_config, train_config:
        The values shown first (default: the dataclasses' defaults).
    parent:
        The parent widget.
    """

    def __init__(
        self,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.fields: dict[tuple[str, str], QSpinBox | QDoubleSpinBox] = {}
        self.switches: dict[tuple[str, str], QCheckBox] = {}
        main = QFormLayout()
        for spec in MAIN_SETTINGS:
            main.addRow(spec[2], self._field(*spec))
        for spec in MAIN_SWITCHES:
            main.addRow(self._switch(*spec))
        advanced = QWidget()
        advanced_form = QFormLayout(advanced)
        advanced_form.setContentsMargins(0, 0, 0, 0)
        for spec in ADVANCED_SETTINGS:
            advanced_form.addRow(spec[2], self._field(*spec))
        for spec in SWITCHES:
            advanced_form.addRow(self._switch(*spec))
        # Views need a member per axis: the Teachers field cannot go below that while ticked.
        self.switches[("model", "views")].toggled.connect(self._views_toggled)
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(advanced)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main)
        layout.addWidget(self.advanced)
        self.show_configs(model_config or ModelConfig(), train_config or TrainConfig())

    def _switch(self, config: str, name: str, text: str, tooltip: str) -> QCheckBox:
        box = QCheckBox(text)
        box.setToolTip(tooltip)
        self.switches[(config, name)] = box
        return box

    def _views_toggled(self, on: bool) -> None:
        self.fields[("model", "members")].setMinimum(VIEW_AXES if on else 1)

    def _field(self, config, name, label, low, high, decimals, tooltip) -> QWidget:
        if decimals is None:
            box = QSpinBox()
        else:
            box = QDoubleSpinBox()
            box.setDecimals(decimals)
            box.setSingleStep(10.0**-decimals if name == "learning_rate" else 0.05)
        box.setRange(low, high)
        if name == "steps":
            box.setSpecialValueText("auto")
        elif name == "max_minutes":
            box.setSpecialValueText("none")
        box.setToolTip(tooltip)
        box.setKeyboardTracking(False)
        self.fields[(config, name)] = box
        return box

    def show_configs(self, model_config: ModelConfig, train_config: TrainConfig | None) -> None:
        """Show the values of ``model_config`` and ``train_config`` (None: keep the train
        settings)."""
        configs = {"model": model_config, "train": train_config}
        for (config, name), box in self.fields.items():
            if configs[config] is not None:
                value = getattr(configs[config], name)
                box.setValue(0 if value is None else value)
        for (config, name), box in self.switches.items():
            if configs[config] is not None:
                box.setChecked(bool(getattr(configs[config], name)))

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """The settings as configs (0 in "auto"/"none" fields becomes None).

        Raises
        ------
        ValueError
            If the configs reject a combination of values.
        """
        values: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for (config, name), box in self.fields.items():
            value = box.value()
            if name in ("steps", "max_minutes") and value == 0:
                value = None
            values[config][name] = value
        for (config, name), box in self.switches.items():
            values[config][name] = box.isChecked()
        return (
            dataclasses.replace(ModelConfig(), **values["model"]),
            dataclasses.replace(TrainConfig(), **values["train"]),
        )
