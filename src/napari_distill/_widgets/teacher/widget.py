"""Teacher dock widget: train a teacher on the painted slices, then predict the whole stack.

The widget only wires signals: the training loop
(:func:`napari_distill.core.training.train_teacher`) and the prediction
(:func:`napari_distill.core.inference.predict_bundle`) run as generators in a
:class:`~napari_distill._widgets.common.workers.WorkerRunner`; the prediction comes back as
layer data that the GUI thread adds (see :mod:`napari_distill._widgets.common.handoff` for what
the layer carries).
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QCheckBox,
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
    class_names_of,
    image_data,
    mirror_checkbox,
    spatial_shape,
    teacher_prediction,
)
from napari_distill._widgets.common.image_set import ImageSetBox
from napari_distill._widgets.common.layers import LayerPicker, show_annotated_slice
from napari_distill._widgets.common.task_switch import add_task_switch
from napari_distill._widgets.common.train_settings import TrainSettings
from napari_distill._widgets.common.training_panel import TrainingPanel
from napari_distill._widgets.common.training_session import SessionControls, TrainingSession
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill._widgets.teacher.cells_task import TeacherCellsTask
from napari_distill._widgets.teacher.plan import PlanLine, layer_plan
from napari_distill._widgets.teacher.project import TeacherProject
from napari_distill._widgets.teacher.propagation_panel import PropagationPanel
from napari_distill.core.models import ModelBundle
from napari_distill.core.preprocess import annotated_slices, class_ids_from_labels
from napari_distill.core.training import TrainingRun, TrainStep, train_teacher

if TYPE_CHECKING:
    import napari


def teacher_training(
    image: Any, labels: np.ndarray, **kwargs: Any
) -> Generator[TrainingRun | TrainStep, None, ModelBundle]:
    """Prepare a teacher run, hand it to the caller (first yield), then train it.

    The run is yielded before training so that the GUI holds it: after a Stop, its
    ``best_bundle()`` is the model to keep. ``kwargs`` go to :func:`train_teacher`.
    """
    run = train_teacher(image, labels, **kwargs)
    yield run
    return (yield from run.steps())


class TeacherWidget(SessionControls, PluginDock):
    """Train a teacher on the annotated slices of a labels layer, then predict the rest."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = WorkerRunner(self, "Teacher")

        self.image_picker = LayerPicker(viewer, Image)
        self.labels_picker = LayerPicker(
            viewer, Labels, accept=self._labels_match_image, images_as_labels=True
        )
        self.image_picker.setToolTip("The image to segment: a CT stack, a slice or a Pap smear.")
        self.labels_picker.setToolTip(
            "Sparse annotations: paint a few slices fully (every class, 0 = background). An "
            "integer image layer of the image's shape is offered too: training copies it into "
            "a new labels layer."
        )
        self._labels_shown: str | None = None  # the labels layer whose painted slice was shown
        self.device_picker = DevicePicker()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.settings = TrainSettings()
        self.plan_line = PlanLine(self.settings)  # the form filled from the data, and why
        self.panel = TrainingPanel(
            train_text="Train teacher",
            score_label="validation Dice",
            resume_tooltip="Continue the stopped run, or the loaded teacher checkpoint, where "
            "it stopped (with its own settings).",
        )
        self.save_button = QPushButton("Save model...")
        self.save_button.setToolTip("Save the teacher (best weights, settings, classes) to a file.")
        self.load_button = QPushButton("Load model...")
        self.load_button.setToolTip("Load a teacher saved earlier, to predict or keep training.")
        self.predict_button = QPushButton("Predict")
        self.predict_button.setToolTip(
            "Segment every slice of the image with the teacher; adds a new labels layer."
        )
        self.probabilities_box = QCheckBox("also add probabilities")
        self.probabilities_box.setToolTip("Add the per-class probabilities as an image layer.")
        self.mirror_box = mirror_checkbox()
        self.model_label = QLabel("No model yet: train one or load one.")
        self.model_label.setWordWrap(True)
        self.session = TrainingSession(self.runner, self.panel, "teacher", self._after_training)
        self.propagation = PropagationPanel(
            viewer, self.runner, lambda: (self.image_picker.layer(), self.labels_picker.layer()),
            lambda: self.bundle, self.device_picker.device, self._update_buttons,
        )  # fmt: skip
        self.export_model_button = ExportModelButton(
            "teacher", lambda: self.bundle, self.image_picker.layer, self.runner,
            self._update_buttons,
        )  # fmt: skip
        self.image_set = ImageSetBox(
            viewer, lambda: (self.image_picker.layer(), self.labels_picker.layer())
        )
        self.project = TeacherProject(self)  # what Train and Predict do with several images
        self._build_layout()
        self.cells_task = TeacherCellsTask(viewer, self)  # Pap smear cells whole (docs/cells.md)
        self.task_switch = add_task_switch(self, self.cells_task)

        self.image_picker.currentIndexChanged.connect(self._image_changed)
        self.labels_picker.currentIndexChanged.connect(self._labels_changed)
        self.panel.train_clicked.connect(self.train)
        self.panel.stop_clicked.connect(self.runner.stop)
        self.panel.resume_clicked.connect(self.resume)
        self.save_button.clicked.connect(lambda: self.session.save(self))
        self.load_button.clicked.connect(self.load_model)
        self.predict_button.clicked.connect(self._predict_clicked)
        viewer.layers.events.inserted.connect(self._watch_labels)
        for layer in viewer.layers:
            self._watch_labels_layer(layer)
        self._image_changed()
        self._labels_changed()
        self._update_buttons()

    def _build_layout(self) -> None:
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Labels", self.labels_picker)
        form.addRow("Device", self.device_picker)
        files = QHBoxLayout()
        files.addWidget(self.save_button)
        files.addWidget(self.load_button)
        predict = QHBoxLayout()
        predict.addWidget(self.predict_button)
        predict.addWidget(self.probabilities_box)
        predict.addWidget(self.mirror_box)
        model_box = QGroupBox("Model")
        model_layout = QVBoxLayout(model_box)
        model_layout.addWidget(self.model_label)
        model_layout.addLayout(files)
        model_layout.addWidget(self.export_model_button)  # its own row: the dock is narrow
        model_layout.addLayout(predict)
        layout = QVBoxLayout(self.content)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.image_set)
        layout.addWidget(self.plan_line)
        layout.addWidget(self.settings)
        layout.addWidget(self.panel)
        layout.addWidget(model_box)
        layout.addWidget(self.propagation)
        layout.addStretch(1)

    # ------------------------------------------------------------------ layers
    def _labels_match_image(self, layer: Labels | Image) -> bool:
        image = self.image_picker.layer() if hasattr(self, "image_picker") else None
        return (
            image is not None
            and layer is not image
            and tuple(layer.data.shape) == spatial_shape(image)
        )

    def _image_changed(self, *_) -> None:
        self.labels_picker.refresh()
        self._update_summary()

    def _labels_changed(self, *_) -> None:
        self.image_set.schedule()  # the image chosen above takes the labels chosen above
        # A newly chosen labels layer is shown on a painted slice (once per choice, so the
        # user's own browsing is left alone): what the teacher learns from, and where to paint.
        labels = self.labels_picker.layer()
        name = None if labels is None else labels.name
        if name != self._labels_shown:
            self._labels_shown = name
            if labels is not None:
                show_annotated_slice(self.viewer, labels)
        self._update_summary()

    def _watch_labels(self, event) -> None:
        self._watch_labels_layer(event.value)

    def _watch_labels_layer(self, layer) -> None:
        if isinstance(layer, Labels):
            # painting changes what is annotated
            layer.events.paint.connect(self._update_summary)
            layer.events.data.connect(self._update_summary)

    def _update_summary(self, *_) -> None:
        image = self.image_picker.layer()
        labels = self.labels_picker.layer()
        names = class_names_of(image, labels) if image is not None else {}
        self.plan_line.schedule(image, labels, self.device_picker.device(), names)
        if image is None:
            self.summary.setText("Open an image (a CT stack or a Pap smear) to start.")
            return
        if labels is None:
            self.summary.setText(
                f"No labels layer matches the image's shape {spatial_shape(image)}. "
                "Add one (layer list: New labels layer) and paint a few slices."
            )
            return
        data = np.asarray(labels.data)
        annotated = annotated_slices(data)
        n_slices = 1 if data.ndim == 2 else data.shape[0]
        if len(annotated) == 0:
            self.summary.setText(
                "No slice is annotated yet: paint at least one slice with two or more "
                "labels (0 is background in an annotated slice)."
            )
            return
        names = class_names_of(image, labels)
        classes = ", ".join(
            f"{c} {names[c]}" if c in names else str(c)
            for c in class_ids_from_labels(data, annotated)
            if c != 0
        )
        shown = ", ".join(str(i) for i in annotated[:8]) + (" ..." if len(annotated) > 8 else "")
        self.summary.setText(
            f"{len(annotated)} of {n_slices} slices annotated ({shown}); classes: {classes}."
        )

    # ------------------------------------------------------------------ training
    def _start_training(self, resume_from: Path | None) -> None:
        if self.image_set.active():
            self.project.start_training(resume_from)
            return
        image, labels = self.image_picker.layer(), self.labels_picker.layer()
        if image is None or labels is None:
            show_error("Choose an image and a labels layer of the same shape first.")
            return
        painted = np.array(labels.data, copy=True)  # the user may keep painting meanwhile
        if len(annotated_slices(painted)) == 0:
            show_error(
                f"Nothing is painted in '{labels.name}': paint at least one slice with two "
                "or more classes, then train."
            )
            return
        try:
            model_config, train_config = self.settings.configs()
            names = class_names_of(image, labels)
            plan = layer_plan(image, painted, self.device_picker.device(), self.settings, names)
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        labels = self.labels_picker.layer_as_labels()  # an image chosen becomes a labels copy
        use_cpu_threads(self.settings.cpu_threads())  # auto: all cores but the GUI's
        self.panel.start()
        self.session.start(
            teacher_training,
            image_data(image),
            painted,
            model_config=model_config,
            train_config=train_config,
            device=self.device_picker.device(),
            class_names=class_names_of(image, labels),
            rgb=image.rgb,
            resume_from=resume_from,
            plan=None if resume_from is not None else plan,
        )
        self._update_buttons()

    def _after_training(self) -> None:
        self._describe_model()
        self.propagation.compare_after(self.run)  # when quick: the teacher vs propagation
        self._update_buttons()

    # ------------------------------------------------------------------ model files
    def load_model(self) -> None:
        """Ask for a checkpoint file and load the teacher it holds."""
        if not self.session.load(self):
            return
        self.settings.show_configs(self.bundle.model_config, self.bundle.train_config)
        self._describe_model(f"Loaded from {self.session.resume_path.name}: ")
        self._update_buttons()

    def _describe_model(self, prefix: str = "") -> None:
        bundle = self.bundle
        if bundle is None:
            self.model_label.setText("No model yet: train one or load one.")
            return
        names = ", ".join(bundle.class_names.get(c, str(c)) for c in bundle.class_ids)
        best = bundle.extra.get("best_score")
        score = "" if best is None else f", validation Dice {best:.3f}"
        members = bundle.model_config.members
        what = "teacher" if members == 1 else f"ensemble of {members} teachers"
        if bundle.model_config.views:
            what += " along the volume's three axes"
        if bundle.model_config.downsample > 1:
            what += f" (working at 1/{bundle.model_config.downsample} scale)"
        self.model_label.setText(f"{prefix}{what} at step {bundle.step}{score}; classes: {names}.")

    # ------------------------------------------------------------------ prediction
    def _predict_clicked(self) -> None:
        if self.runner.is_running:
            self.runner.stop()
            self.predict_button.setEnabled(False)
        else:
            self.predict()

    def predict(self) -> None:
        """Predict the chosen image (or the images ticked) with the teacher (Predict)."""
        if self.image_set.active() and self.bundle is not None:
            self.project.predict()
            return
        image = self.image_picker.layer()
        if self.bundle is None or image is None:
            show_error("Train or load a teacher and choose an image first.")
            return
        self.runner.start(
            teacher_prediction,
            self.bundle,
            image_data(image),
            SourceLayer.from_layer(image),
            self.device_picker.device(),
            self.probabilities_box.isChecked(),
            self.mirror_box.isChecked(),
            on_return=self._on_predicted,
            on_finish=self._on_prediction_finished,
            progress=lambda p: (p.done, p.total),
            description="Teacher prediction",
            error_message="Teacher prediction failed",
        )
        self.predict_button.setText("Cancel")
        self.panel.set_status("Predicting...")
        self._update_buttons()

    def _on_predicted(self, layer_data: list) -> None:
        added = add_layer_data(self.viewer, layer_data)
        self.panel.set_status(f"Added {', '.join(repr(layer.name) for layer in added)}.")

    def _on_prediction_finished(self, outcome: str) -> None:
        self.predict_button.setText("Predict")
        if outcome == "aborted":
            self.panel.set_status("Prediction cancelled.")
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.runner.is_running
        training = busy and self.panel.stop_button.isEnabled()
        self.panel.train_button.setEnabled(not busy)
        self.panel.resume_button.setEnabled(not busy and self.session.resumable)
        self.save_button.setEnabled(not busy and self.bundle is not None)
        self.export_model_button.setEnabled(not busy and self.bundle is not None)
        self.load_button.setEnabled(not busy)
        predicting = busy and not training and not self.propagation.busy  # Predict cancels
        self.predict_button.setEnabled(self.bundle is not None and (predicting or not busy))
        self.settings.setEnabled(not busy)
        self.propagation.update_buttons(busy)
