"""The fit half of the Quality widget: classifier settings, Fit / Stop, the held-out check.

:class:`FitPanel` is a view: the owning widget runs
:func:`~napari_distill.core.quality.fit_quality` in its worker, feeds the records to
:meth:`FitPanel.show_record` and the fitted classifier to :meth:`FitPanel.set_model`. The panel
saves and loads the classifier itself (atomic ``"quality"`` checkpoints) and says so with
:attr:`FitPanel.model_changed`. After a fit, :func:`describe_quality` states the Spearman rank
correlation between predicted and true IoU on the held-out annotated slices.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_distill._widgets.common.handoff import CHECKPOINT_FILTER, ask_save_model
from napari_distill._widgets.common.training_panel import TrainingPanel
from napari_distill.core.config import QualityConfig
from napari_distill.core.models import CheckpointError
from napari_distill.core.quality import QualityModel, VariantProgress, load_quality, save_quality
from napari_distill.core.training import TrainStep

# (field, label, minimum, maximum, decimals or None for integers, tooltip)
SETTINGS = (
    ("steps", "Steps", 1, 100_000, None, "Optimiser steps of the quality classifier."),
    ("variants_per_slice", "Variants per slice", 0, 64, None,
     "Pseudo-labels of varied quality made per annotated slice (perturbed teachers) to learn "
     "what a bad pseudo-label looks like."),
    ("holdout_fraction", "Held-out fraction", 0.0, 0.9, 2,
     "Share of the annotated slices kept aside to check the ranking (Spearman); needs 3 or "
     "more annotated slices."),
    ("input_size", "Input size (px)", 16, 1024, None,
     "Slices and probabilities are resized to this square for the classifier."),
)  # fmt: skip


class QualitySettings(QWidget):
    """A form for the :class:`QualityConfig` settings a user may want to change."""

    def __init__(self, config: QualityConfig | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.fields = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for name, label, low, high, decimals, tooltip in SETTINGS:
            box = QSpinBox() if decimals is None else QDoubleSpinBox()
            if decimals is not None:
                box.setDecimals(decimals)
                box.setSingleStep(0.05)
            box.setRange(low, high)
            box.setToolTip(tooltip)
            box.setKeyboardTracking(False)
            self.fields[name] = box
            form.addRow(label, box)
        self.show_config(config or QualityConfig())

    def show_config(self, config: QualityConfig) -> None:
        """Show ``config``'s values."""
        for name, box in self.fields.items():
            box.setValue(getattr(config, name))

    def config(self, tau: float) -> QualityConfig:
        """The settings as a :class:`QualityConfig` (ValueError if it rejects them)."""
        values = {name: box.value() for name, box in self.fields.items()}
        return dataclasses.replace(QualityConfig(), tau=tau, **values)


def describe_quality(model: QualityModel, prefix: str = "") -> str:
    """One paragraph on a fitted classifier: steps and its held-out check."""
    report = model.report
    text = f"{prefix}quality classifier at step {model.step}"
    if report is None:
        return text + " (no held-out check recorded)."
    if not report.holdout_slices:
        return (
            text + "; no held-out check: annotate at least 3 slices so that one can be kept "
            "aside to measure how well it ranks slices."
        )
    held = ", ".join(map(str, report.holdout_slices))
    if math.isnan(report.spearman):
        return (
            f"{text}; held-out check on slice(s) {held}: no ranking to measure (too few or "
            f"identical scores; mean |error| {report.mean_abs_error:.2f})."
        )
    return (
        f"{text}; held-out check on slice(s) {held}: "
        f"Spearman {report.spearman:.2f}, mean |error| {report.mean_abs_error:.2f} "
        f"({report.n_holdout} pseudo-labels)."
    )


class FitPanel(QWidget):
    """Settings, Fit / Stop with progress and loss curve, the fitted classifier and its files.

    Signals
    -------
    model_changed:
        :attr:`quality` changed (fitted or loaded).
    """

    model_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.quality: QualityModel | None = None  # the classifier Score and Save use
        self.settings = QualitySettings()
        self.panel = TrainingPanel(
            train_text="Fit quality classifier",
            score_label=None,
            plot_hint="The classifier's loss appears here once it trains, after the "
            "pseudo-labels it learns from are made.",
        )
        self.model_label = QLabel("No quality classifier yet: fit one or load one.")
        self.model_label.setWordWrap(True)
        self.save_button = QPushButton("Save classifier...")
        self.save_button.setToolTip("Save the fitted quality classifier to a file.")
        self.load_button = QPushButton("Load classifier...")
        self.load_button.setToolTip("Load a quality classifier fitted earlier for this teacher.")
        self.save_button.clicked.connect(self.save_quality)
        self.load_button.clicked.connect(self.load_quality)

        layout = QVBoxLayout(self)
        settings = QCollapsible("Classifier settings")
        settings.addWidget(self.settings)
        layout.addWidget(settings)
        layout.addWidget(self.panel)
        layout.addWidget(self.model_label)
        files = QHBoxLayout()
        files.addWidget(self.save_button)
        files.addWidget(self.load_button)
        layout.addLayout(files)
        layout.addStretch(1)
        self.set_busy(False)

    def set_busy(self, busy: bool) -> None:
        """Disable the settings and files while any worker of the widget runs."""
        self.settings.setEnabled(not busy)
        self.save_button.setEnabled(not busy and self.quality is not None)
        self.load_button.setEnabled(not busy)

    def show_record(self, record: VariantProgress | TrainStep) -> None:
        """Draw a record of :func:`~napari_distill.core.quality.fit_quality`."""
        bar = self.panel.progress_bar
        if isinstance(record, VariantProgress):
            bar.setFormat("pseudo-label %v / %m")
            bar.setRange(0, max(1, record.total))
            bar.setValue(record.done)
        else:
            bar.setFormat("step %v / %m")
            self.panel.show_step(record)

    def set_model(self, model: QualityModel, prefix: str = "Fitted ") -> None:
        """Use ``model`` from now on and describe it."""
        self.quality = model
        self.model_label.setText(describe_quality(model, prefix))
        self.save_button.setEnabled(True)
        self.model_changed.emit()

    def save_quality(self) -> None:
        """Ask for a file and save the quality classifier."""
        model = self.quality
        if model is None:
            show_error("There is no quality classifier to save yet: fit or load one.")
            return
        ask_save_model(
            self, "Save quality classifier", "quality.pt", lambda p: save_quality(p, model)
        )

    def load_quality(self) -> None:
        """Ask for a quality classifier file and load it."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Load quality classifier", "", CHECKPOINT_FILTER
        )
        if not path:
            return
        try:
            model = load_quality(path)
        except (CheckpointError, OSError) as error:
            show_error(f"Could not load a quality classifier: {error}")
            return
        self.set_model(model, f"Loaded {Path(path).name}: ")
