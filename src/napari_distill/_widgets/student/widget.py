"""Student (distillation) dock widget: distil the teacher into a student, predict, export.

The widget only wires signals. What the student learns from is chosen in
:class:`~napari_distill._widgets.student.inputs.StudentInputsForm`; the strategy comes from
:data:`napari_distill.core.strategies.STRATEGIES` and its settings form is built from the
strategy's config dataclass
(:class:`~napari_distill._widgets.student.strategy_form.ConfigForm`), so a new strategy needs
no change here. Training (the strategy's ``TrainingRun``), prediction
(:func:`~napari_distill.core.inference.predict_bundle`) and export
(:func:`napari_distill._writer.write_labels_layer`) run as generators in
:class:`~napari_distill._widgets.common.workers.WorkerRunner` s and return data; the GUI thread
adds the layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from napari_distill._widgets.common.device import DevicePicker, use_cpu_threads
from napari_distill._widgets.common.dock import PluginDock
from napari_distill._widgets.common.export_model import ExportModelButton
from napari_distill._widgets.common.handoff import (
    SourceLayer,
    add_layer_data,
    image_data,
    mirror_checkbox,
)
from napari_distill._widgets.common.task_switch import add_task_switch
from napari_distill._widgets.common.train_settings import TrainSettings
from napari_distill._widgets.common.training_panel import TrainingPanel
from napari_distill._widgets.common.training_session import SessionControls, TrainingSession
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill._widgets.student.cells_task import StudentCellsTask
from napari_distill._widgets.student.cleanup import CleanupRow
from napari_distill._widgets.student.inputs import InputError, StudentInputsForm
from napari_distill._widgets.student.project import StudentProjectBox
from napari_distill._widgets.student.strategy_form import StrategyPicker
from napari_distill._widgets.student.tasks import (
    ask_export_path,
    export_labels,
    fill_instance_classes,
    hide_model_settings,
    student_prediction,
    student_training,
)
from napari_distill.core.strategies import STRATEGIES, get_strategy, prediction_bundle

if TYPE_CHECKING:
    import napari

GUIDE_URL = "https://github.com/napari-distill/napari-distill/blob/main/docs/strategies.md"


class StudentWidget(SessionControls, PluginDock):
    """Distil a teacher into a student on the annotated and accepted slices, then predict."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = WorkerRunner(self, "Student")
        self.export_runner = WorkerRunner(self, "Export")
        self.prediction_layer: Labels | None = None  # what Export writes

        self.inputs = StudentInputsForm(viewer)
        self.device_picker = DevicePicker()
        self.strategy = StrategyPicker(STRATEGIES)
        self.settings = TrainSettings()
        hide_model_settings(self.settings)  # the student's network follows the teacher's
        self.panel = TrainingPanel(
            train_text="Train student",
            score_label="validation Dice",
            resume_tooltip="Continue the stopped run, or the loaded student checkpoint, where "
            "it stopped.",
        )
        self.resume_button = self.panel.resume_button
        self.model_label = QLabel("No student yet: train one or load one.")
        self.model_label.setWordWrap(True)
        self.save_button = QPushButton("Save model...")
        self.save_button.setToolTip("Save the student (best weights; resumable) to a file.")
        self.load_button = QPushButton("Load student...")
        self.load_button.setToolTip("Load a saved student to predict with it or resume training.")
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip("Segment the image with the student into a new layer.")
        self.instances_box = QCheckBox("split into instances:")
        self.instances_box.setToolTip(
            "Split the predicted classes into separate objects (cells, nuclei) by a distance-"
            "transform watershed."
        )
        self.instance_class_box = QComboBox()
        self.mirror_box = mirror_checkbox()
        self.instance_class_box.setToolTip("Which class is split into instances.")
        self.cleanup = CleanupRow()
        self.export_button = QPushButton("Export...")
        self.export_button.setToolTip(
            "Export the student's latest labels layer to a TIFF file (File > Save Selected "
            "Layers works too)."
        )
        self.guide_link = QLabel(f'<a href="{GUIDE_URL}">Which strategy for my annotations?</a>')
        self.guide_link.setOpenExternalLinks(True)
        self.guide_link.setToolTip(
            "The strategy guide: a few full slices, scribbles or points, "
            "or coarse outlines, with the benchmarks behind each advice."
        )
        self.session = TrainingSession(self.runner, self.panel, "student", self._after_training)
        self.export_model_button = ExportModelButton(
            "student", lambda: self.bundle, self.inputs.image_picker.layer, self.runner,
            self._update_buttons,
        )  # fmt: skip
        self.project = StudentProjectBox(self)  # Train and Predict on every image, when ticked
        self._build_layout()
        self.cells_task = StudentCellsTask(viewer, self)  # Pap smear cells whole (docs/cells.md)
        self.task_switch = add_task_switch(self, self.cells_task)

        self.inputs.changed.connect(self._update_buttons)
        self.inputs.changed.connect(self.project.refresh)
        self.strategy.combo.currentIndexChanged.connect(self._strategy_changed)
        self.panel.train_clicked.connect(self.train)
        self.panel.stop_clicked.connect(self.runner.stop)
        self.panel.resume_clicked.connect(self.resume)
        self.save_button.clicked.connect(lambda: self.session.save(self))
        self.load_button.clicked.connect(self.load_model)
        self.predict_button.clicked.connect(self._predict_clicked)
        self.export_button.clicked.connect(self.export)
        self.instances_box.toggled.connect(self.instance_class_box.setEnabled)
        self.instance_class_box.setEnabled(False)
        viewer.layers.events.removed.connect(self._update_buttons)
        self._update_buttons()

    def _build_layout(self) -> None:
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Device", self.device_picker)
        files = QHBoxLayout()
        for button in (self.save_button, self.load_button, self.export_button):
            files.addWidget(button)
        # Two rows: on one, the three controls are wider than napari's dock (and get clipped).
        predict = QHBoxLayout()
        predict.addWidget(self.predict_button)
        predict.addWidget(self.mirror_box)
        predict.addStretch(1)
        instances = QHBoxLayout()
        instances.addWidget(self.instances_box)
        instances.addWidget(self.instance_class_box, 1)
        model_box = QGroupBox("Student")
        model_layout = QVBoxLayout(model_box)
        model_layout.addWidget(self.model_label)
        model_layout.addLayout(predict)
        model_layout.addWidget(self.cleanup)
        model_layout.addLayout(instances)
        model_layout.addLayout(files)
        model_layout.addWidget(self.export_model_button)  # its own row: the dock is narrow
        layout = QVBoxLayout(self.content)
        layout.addWidget(self.inputs)
        layout.addWidget(self.project)
        layout.addLayout(form)
        layout.addWidget(self.strategy)
        layout.addWidget(self.guide_link)
        layout.addWidget(self.settings)
        layout.addWidget(self.panel)
        layout.addWidget(model_box)
        layout.addStretch(1)

    def enterEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        # the Quality review changes the selection in place: recount when the user comes back
        self.inputs.update_summary()
        self.project.refresh()
        super().enterEvent(event)

    def _strategy_changed(self, *_: Any) -> None:
        spec = get_strategy(self.strategy.name())
        self.inputs.show_weak_inputs("weak_labels" in spec.inputs, spec.name == "kd")

    # ------------------------------------------------------------------ training
    def _start_training(self, resume_from: Path | None) -> None:
        if self.project.active():
            self.project.start_training(resume_from)
            return
        try:
            inputs = self.inputs.inputs()
            _model_config, train_config = self.settings.configs()
            strategy_config = self.strategy.form.config()
        except InputError as error:
            show_error(str(error))
            return
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        use_cpu_threads(self.settings.cpu_threads())
        self.panel.start(
            "Preparing the student's data (the teacher predicts the accepted slices)..."
            if inputs.pseudo_labels is None and inputs.accepted
            else "Preparing the student's data..."
        )
        self.session.start(
            student_training,
            self.strategy.name(),
            inputs.teacher,
            inputs.image,
            inputs.labels,
            inputs.accepted,
            train_config=train_config,
            strategy_config=strategy_config,
            device=self.device_picker.device(),
            pseudo_labels=inputs.pseudo_labels,
            resume_from=resume_from,
            rgb=inputs.image_layer.rgb,
            **inputs.weak,
        )
        self._update_buttons()

    def _after_training(self) -> None:
        self._describe_model()
        self._update_buttons()

    # ------------------------------------------------------------------ model files
    def load_model(self) -> None:
        """Ask for a student checkpoint: predict with it, or Resume its training."""
        if not self.session.load(self):
            return
        self.strategy.show_saved(
            self.bundle.extra.get("strategy"), self.bundle.extra.get("strategy_config")
        )
        self._strategy_changed()  # show_saved changes the strategy without signals
        if self.bundle.train_config is not None:
            self.settings.show_configs(self.bundle.model_config, self.bundle.train_config)
        self._describe_model(f"Loaded from {self.session.resume_path.name}: ")
        self._update_buttons()

    def _describe_model(self, prefix: str = "") -> None:
        bundle = self.bundle
        if bundle is None:
            self.model_label.setText("No student yet: train one or load one.")
            return
        best = bundle.extra.get("best_score")
        score = "" if best is None else f", validation Dice {best:.3f}"  # of the kept weights
        accepted = len(bundle.extra.get("accepted_slices") or [])
        self.model_label.setText(
            f"{prefix}student ({bundle.extra.get('strategy', '?')}) at step {bundle.step}{score}, "
            f"{accepted} accepted slice(s)."
        )
        fill_instance_classes(self.instance_class_box, bundle)
        self.cleanup.set_classes(bundle)

    # ------------------------------------------------------------------ prediction
    def _predict_clicked(self) -> None:
        if self.runner.is_running:
            self.runner.stop()
            self.predict_button.setEnabled(False)
        else:
            self.predict()

    def predict(self) -> None:
        """Predict the chosen image (or every image of the teacher) with the student."""
        if self.project.active() and self.bundle is not None:
            self.project.predict()
            return
        image = self.inputs.image_picker.layer()
        if self.bundle is None or image is None:
            show_error("Train or load a student and choose an image first.")
            return
        classes = self.instance_class_box.currentData() if self.instances_box.isChecked() else None
        self.runner.start(
            student_prediction,
            prediction_bundle(self.bundle),  # the branch or network the settings name
            image_data(image),
            SourceLayer.from_layer(image),
            self.device_picker.device(),
            classes,
            self.mirror_box.isChecked(),
            self.cleanup.config(),
            on_return=self._on_predicted,
            on_finish=self._on_prediction_finished,
            progress=lambda p: (p.done, p.total),
            description="Student prediction",
            error_message="Student prediction failed",
        )
        self.predict_button.setText("Cancel")
        self.panel.set_status("Predicting...")
        self._update_buttons()

    def _on_predicted(self, layer_data: list) -> None:
        added = add_layer_data(self.viewer, layer_data)
        self.prediction_layer = added[0]
        self.panel.set_status(f"Added {', '.join(repr(layer.name) for layer in added)}.")

    def _on_prediction_finished(self, outcome: str) -> None:
        self.predict_button.setText("Predict")
        if outcome == "aborted":
            self.panel.set_status("Prediction cancelled.")
        self._update_buttons()

    # ------------------------------------------------------------------ export
    def export(self) -> None:
        """Ask for a TIFF file and write the student's latest labels layer to it."""
        layer = self.prediction_layer
        if layer is None or layer not in self.viewer.layers:
            show_error("No student labels to export: press Predict first.")
            return
        path = ask_export_path(self, f"{layer.name}.tif")
        if path is None:
            return
        data, meta, _kind = layer.as_layer_data_tuple()
        if isinstance(data, np.ndarray):
            data = data.copy()  # the user may paint while it is written
        self.export_runner.start(
            export_labels,
            str(path),
            data,
            meta,
            on_return=lambda written: show_info(f"Exported {layer.name!r} to {written[0]}"),
            on_finish=lambda outcome: self._update_buttons(),
            description="Exporting labels",
            error_message=f"Could not export the labels to {path}",
        )
        self._update_buttons()

    # ------------------------------------------------------------------ state
    def _update_buttons(self, *_: Any) -> None:
        busy = self.runner.is_running
        training = busy and self.panel.stop_button.isEnabled()
        ready = self.inputs.teacher() is not None
        self.panel.train_button.setEnabled(not busy)
        self.resume_button.setEnabled(not busy and ready and self.session.resumable)
        self.save_button.setEnabled(not busy and self.bundle is not None)
        self.export_model_button.setEnabled(not busy and self.bundle is not None)
        self.load_button.setEnabled(not busy)
        self.predict_button.setEnabled(self.bundle is not None and not training)
        exportable = (
            self.prediction_layer is not None and self.prediction_layer in self.viewer.layers
        )
        self.export_button.setEnabled(exportable and not self.export_runner.is_running)
        for part in (self.settings, self.strategy, self.inputs):
            part.setEnabled(not busy)
