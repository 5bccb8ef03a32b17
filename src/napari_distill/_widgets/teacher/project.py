"""The Teacher widget with *Several images* ticked: one teacher on the painted slices of every
ticked image, then one prediction layer per image.

Training runs :func:`~napari_distill._widgets.common.project_tasks.project_teacher_training`
in the widget's own session (live curves, Stop, Resume, Save as for one image); the stack of
the images lives in a :class:`~napari_distill._widgets.common.project_layers.ProjectWork`
folder until the next run or the widget's end. Predict adds ``"<image> teacher"`` for each
ticked image (never replacing a layer), each carrying the labels layer its image was paired
with, so the Quality review and the Student find the pairs; the images are predicted by the
core's batch in this process (the path of ``run --images``, never a Dask cluster from here).
While *Several images* is ticked, Views are greyed out with their reason
(:data:`~napari_distill.core.project.VIEWS_UNAVAILABLE`): the stack of several volumes is
sliced along its first axis only.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error

from napari_distill._widgets.common.device import use_cpu_threads
from napari_distill._widgets.common.handoff import (
    TEACHER_ROLE,
    SourceLayer,
    class_names_of,
    image_data,
    layer_data_for,
)
from napari_distill._widgets.common.project_layers import (
    LABELS_LAYER_KEY,
    ImageSetError,
    ProjectWork,
    check_pairs,
    project_images,
    project_names,
)
from napari_distill._widgets.common.project_tasks import predict_each, project_teacher_training
from napari_distill.core.project import VIEWS_UNAVAILABLE

if TYPE_CHECKING:
    from napari_distill._widgets.teacher.widget import TeacherWidget


class TeacherProject:
    """Train and predict the ticked images of ``widget.image_set``."""

    def __init__(self, widget: TeacherWidget) -> None:
        self.widget = widget
        self.work = ProjectWork("teacher")
        work = self.work  # held by the slot: it outlives the Python wrapper
        widget.destroyed.connect(lambda *_: work.clear())
        widget.image_set.toggled.connect(self._image_set_toggled)

    def _image_set_toggled(self, on: bool) -> None:
        # one stack of several volumes slices along its first axis only: Views greyed out,
        # saying why, and the plan line planned so
        self.widget.settings.set_views_unavailable(VIEWS_UNAVAILABLE if on else None)
        self.widget._update_summary()

    def start_training(self, resume_from: Path | None) -> None:
        """A new run (or the loaded checkpoint ``resume_from``) on every ticked image."""
        widget = self.widget
        pairs = widget.image_set.pairs()
        try:
            images = project_images(pairs)
            model_config, train_config = widget.settings.configs()
            given = widget.settings.given()
        except ImageSetError as error:
            show_error(str(error))
            return
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        loaded = widget.bundle if resume_from is not None else None
        if loaded is not None and loaded.model_config.views:
            show_error(
                f"This teacher has Views, which resume on one image only: {VIEWS_UNAVAILABLE}. "
                "Untick Several images to resume it on one image, or train a new teacher."
            )
            return
        first = pairs[0][0]
        spacing = tuple(float(s) for s in first.scale) if len(first.scale) == 3 else None
        use_cpu_threads(widget.settings.cpu_threads())  # auto: all cores but the GUI's
        widget.panel.start(f"Preparing the slices of {len(images)} images...")
        widget.session.start(
            project_teacher_training,
            images,
            self.work.new(),
            plan_given=given,
            spacing=spacing,
            model_config=model_config,
            train_config=train_config,
            device=widget.device_picker.device(),
            class_names=class_names_of(first, *(labels for _, labels in pairs)),
            resume_from=resume_from,
        )
        widget._update_buttons()

    def predict(self) -> None:
        """Predict every ticked image with the teacher: a labels layer (and probabilities
        when asked) per image, named after it."""
        widget = self.widget
        pairs = widget.image_set.pairs()
        try:
            check_pairs(pairs)
        except ImageSetError as error:
            show_error(str(error))
            return
        items = [(image_data(image), SourceLayer.from_layer(image)) for image, _ in pairs]
        extra = {
            image.name: {LABELS_LAYER_KEY: None if labels is None else labels.name}
            for image, labels in pairs
        }
        layers_of = partial(
            layer_data_for, bundle=widget.bundle, role=TEACHER_ROLE, label="teacher",
            with_probabilities=widget.probabilities_box.isChecked(),
        )  # fmt: skip
        widget.runner.start(
            predict_each, layers_of, widget.bundle, items, widget.device_picker.device(),
            widget.mirror_box.isChecked(), extra=extra, on_return=widget._on_predicted,
            on_finish=widget._on_prediction_finished, progress=lambda p: p.fraction(),
            description=f"Teacher prediction of {len(items)} images",
            error_message="Teacher prediction failed",
        )  # fmt: skip
        widget.predict_button.setText("Cancel")
        widget.panel.set_status(f"Predicting {project_names(pairs)}...")
        widget._update_buttons()
