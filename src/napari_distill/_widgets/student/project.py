"""The Student widget's *All images of the teacher*: one student from the painted slices and the
accepted pseudo-labels of every image the teacher predicted, then one prediction per image
(issue 26).

The images are the chosen teacher prediction's and every other prediction of the same teacher
(:func:`~napari_distill._widgets.common.project_layers.teacher_project`); each brings its
labels layer (painted slices), its teacher labels (with the user's corrections) and the
selection the Quality review published on it (accepted slices; none when not scored). The run
is :func:`~napari_distill._widgets.common.project_tasks.project_student_training` in the
widget's own session, on the core's project stack; strategies that learn from one image's weak
labels (``mixed``, ``mutual``) are refused here with a message.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QGroupBox, QLabel, QVBoxLayout

from napari_distill._widgets.common.device import use_cpu_threads
from napari_distill._widgets.common.handoff import SourceLayer, handoff, image_data
from napari_distill._widgets.common.project_layers import (
    ImageSetError,
    ProjectLayers,
    ProjectWork,
    painted_count,
    project_images,
    teacher_project,
)
from napari_distill._widgets.common.project_tasks import predict_each, project_student_training
from napari_distill._widgets.student.tasks import student_layers
from napari_distill.core.quality import Selection
from napari_distill.core.strategies import get_strategy, prediction_bundle

if TYPE_CHECKING:
    from napari_distill._widgets.student.widget import StudentWidget


def accepted_of(item: ProjectLayers) -> list[int]:
    """The unpainted slices the Quality review accepted for ``item`` ([] when not scored)."""
    selection = (handoff(item.teacher) or {}).get("selection")
    if not isinstance(selection, Selection):
        return []
    return sorted(set(selection.accepted) - set(selection.annotated))


class StudentProjectBox(QGroupBox):
    """Ticked: Train and Predict use every image of the chosen teacher."""

    def __init__(self, widget: StudentWidget) -> None:
        super().__init__("All images of the teacher")
        self.widget = widget
        self.work = ProjectWork("student")
        work = self.work  # held by the slot: it outlives the Python wrapper
        self.destroyed.connect(lambda *_: work.clear())
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip(
            "Train one student on the painted slices and the accepted pseudo-labels of every "
            "image the chosen teacher predicted (Teacher widget: Several images), then predict "
            "each of them."
        )
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        QVBoxLayout(self).addWidget(self.summary)
        self.toggled.connect(self.refresh)
        self.refresh()

    def active(self) -> bool:
        return self.isChecked()

    def items(self) -> list[ProjectLayers]:
        return teacher_project(self.widget.viewer, self.widget.inputs.teacher_layer())

    def refresh(self, *_: Any) -> None:
        """Say which images the student would learn from, and how many slices of each."""
        items = self.items()
        self.summary.setVisible(self.isChecked())
        # the one-image count above would mislead: this box counts every image instead
        self.widget.inputs.summary.setVisible(not self.isChecked())
        if not items:
            self.summary.setText(
                "Choose a teacher prediction above: its teacher's predictions of other images "
                "are used with it."
            )
            return
        parts = [
            f"'{item.image.name}': {painted_count(item.labels)} painted + "
            f"{len(accepted_of(item))} accepted"
            for item in items
        ]
        self.summary.setText(f"{len(items)} image(s): " + "; ".join(parts) + ".")

    def start_training(self, resume_from: Path | None) -> None:
        """A student run on every image of the teacher (the Train button, or Resume of a
        loaded checkpoint)."""
        widget = self.widget
        items = self.items()
        strategy = widget.strategy.name()
        if "weak_labels" in get_strategy(strategy).inputs:
            show_error(
                f"The {strategy} strategy learns from one image's scribbles or points: untick "
                "'All images of the teacher', or choose kd for several images."
            )
            return
        if not items:
            show_error("Choose a teacher prediction layer (made by the Teacher widget) first.")
            return
        try:
            images = project_images([(item.image, item.labels) for item in items])
            _model_config, train_config = widget.settings.configs()
            strategy_config = widget.strategy.form.config()
        except ImageSetError as error:
            show_error(str(error))
            return
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        teacher = handoff(items[0].teacher)["bundle"]
        use_cpu_threads(widget.settings.cpu_threads())
        widget.panel.start(f"Preparing the slices of {len(items)} images...")
        widget.session.start(
            project_student_training, strategy, teacher, images,
            {item.image.name: item.teacher.data for item in items},
            {item.image.name: accepted_of(item) for item in items}, self.work.new(),
            train_config=train_config, strategy_config=strategy_config,
            device=widget.device_picker.device(), resume_from=resume_from,
        )  # fmt: skip
        widget._update_buttons()

    def predict(self) -> None:
        """Predict every image of the teacher with the student: a layer per image."""
        widget = self.widget
        items = self.items()
        if not items:
            show_error("Choose a teacher prediction layer (made by the Teacher widget) first.")
            return
        classes = (
            widget.instance_class_box.currentData() if widget.instances_box.isChecked() else None
        )
        bundle = prediction_bundle(widget.bundle)
        layers_of = partial(
            student_layers, bundle=bundle, instance_classes=classes,
            cleanup=widget.cleanup.config(),
        )  # fmt: skip
        widget.runner.start(
            predict_each, layers_of, bundle,
            [(image_data(item.image), SourceLayer.from_layer(item.image)) for item in items],
            widget.device_picker.device(), widget.mirror_box.isChecked(),
            on_return=widget._on_predicted, on_finish=widget._on_prediction_finished,
            progress=lambda p: p.fraction(),
            description=f"Student prediction of {len(items)} images",
            error_message="Student prediction failed",
        )  # fmt: skip
        widget.predict_button.setText("Cancel")
        widget.panel.set_status(f"Predicting {len(items)} images...")
        widget._update_buttons()
