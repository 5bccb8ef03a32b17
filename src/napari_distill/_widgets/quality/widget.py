"""Quality review dock widget: rate the teacher's pseudo-label of every slice, pick the good ones.

The user picks the image, its sparse labels and a teacher prediction (a layer made by the Teacher
widget, or one predicted here from a teacher file: *Load...* next to it). *Fit* trains the quality
classifier (:func:`napari_distill.core.quality.fit_quality`) and shows the Spearman rank
correlation of its held-out check; *Score slices* rates every slice from the layer's
probabilities (:func:`napari_distill.core.quality.score_slices`). Both run as generators in a
:class:`~napari_distill._widgets.common.workers.WorkerRunner` and return data; the GUI thread
shows it.
The review (:class:`~napari_distill._widgets.quality.review_tab.ReviewPanel`) plots the scores over
the slice index and lists them in a sortable table; a click on either shows that slice; the
threshold slider, Accept (A), Reject (R), Reset, Next worst (N) and Jump to worst edit the
selection, which can be saved and loaded as CSV or JSON.

Published selection
-------------------
The current :class:`~napari_distill.core.quality.Selection` is stored in the teacher
prediction layer's hand-off dict (see :mod:`napari_distill._widgets.common.handoff`)::

    layer.metadata["napari_distill"]["selection"]    # SELECTION_KEY

It is the live object: the slider and the buttons edit it in place, so the Student widget reads
the current decisions (``selection.accepted_slices``, ``selection.annotated``) whenever it
starts; scoring again or loading a file replaces it. Its indices are the layer's axis-0 slices.
The Teacher widget may also publish ``"snapshots"`` (earlier teacher weights from
:class:`~napari_distill.core.quality.SnapshotRecorder`): the fit then uses them as variants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from napari_distill._widgets.common.device import DevicePicker, use_cpu_threads
from napari_distill._widgets.common.dock import PluginDock
from napari_distill._widgets.common.handoff import (
    TEACHER_ROLE,
    SourceLayer,
    add_layer_data,
    ask_load_model,
    handoff,
    image_data,
    spatial_shape,
    teacher_prediction,
)
from napari_distill._widgets.common.layers import LayerPicker
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill._widgets.quality.fit_tab import FitPanel
from napari_distill._widgets.quality.project_review import ProjectReviewPanel
from napari_distill._widgets.quality.review_tab import SELECTION_KEY, ReviewPanel
from napari_distill.core.config import QualityConfig
from napari_distill.core.preprocess import annotated_slices
from napari_distill.core.quality import SliceScores, fit_quality, score_slices

if TYPE_CHECKING:
    import napari

__all__ = ["SELECTION_KEY", "QualityWidget"]


class QualityWidget(PluginDock):
    """Fit the quality classifier, score every slice and review which pseudo-labels to keep."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = WorkerRunner(self, "Quality review")
        self._job: str | None = None  # "fit", "score" or "predict" while a worker runs

        self.image_picker = LayerPicker(viewer, Image, accept=lambda layer: handoff(layer) is None)
        self.labels_picker = LayerPicker(
            viewer, Labels, accept=self._is_painted_labels, images_as_labels=True
        )
        self.teacher_picker = LayerPicker(viewer, Labels, accept=self._is_teacher_prediction)
        self.image_picker.setToolTip("The image the teacher segmented.")
        self.labels_picker.setToolTip("The sparse annotations the teacher was trained on.")
        self.teacher_picker.setToolTip("The teacher's prediction (made by the Teacher widget).")
        self.load_teacher_button = QPushButton("Load...")
        self.load_teacher_button.setToolTip(
            "Load a saved teacher file and predict the image with it (adds a teacher layer)."
        )
        self.device_picker = DevicePicker()
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        self.fitting = FitPanel()
        self.score_button = QPushButton("Score slices")
        self.score_button.setToolTip("Predict the IoU of the teacher's label of every slice.")
        self.score_bar = QProgressBar()
        self.score_bar.setFormat("slice %v / %m")
        self.review = ReviewPanel(viewer, QualityConfig().tau)
        self.project_review = ProjectReviewPanel(  # every image of the teacher, ranked
            viewer, self.teacher_picker.layer, self.fitting.settings.config,
            self.device_picker.device, self.fitting.set_model,
        )  # fmt: skip
        self.tabs = QTabWidget()
        self._build_layout()

        self.image_picker.currentIndexChanged.connect(self._image_changed)
        self.labels_picker.currentIndexChanged.connect(self._update_summary)
        self.teacher_picker.currentIndexChanged.connect(self._teacher_changed)
        self.load_teacher_button.clicked.connect(self._load_teacher_clicked)
        self.fitting.panel.train_clicked.connect(self.fit)
        self.fitting.panel.stop_clicked.connect(self.runner.stop)
        self.fitting.model_changed.connect(self._update_buttons)
        self.score_button.clicked.connect(self._score_clicked)
        self._image_changed()

    def _build_layout(self) -> None:
        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Labels", self.labels_picker)
        teacher_row = QHBoxLayout()
        teacher_row.addWidget(self.teacher_picker, 1)
        teacher_row.addWidget(self.load_teacher_button)
        form.addRow("Teacher", teacher_row)
        form.addRow("Device", self.device_picker)

        review_tab = QWidget()
        review_layout = QVBoxLayout(review_tab)
        score_row = QHBoxLayout()
        score_row.addWidget(self.score_button)
        score_row.addWidget(self.score_bar, 1)
        review_layout.addLayout(score_row)
        review_layout.addWidget(self.review, 1)

        self.tabs.addTab(self.fitting, "1. Fit")
        self.tabs.addTab(review_tab, "2. Review")
        self.tabs.addTab(self.project_review, "All images")
        layout = QVBoxLayout(self.content)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.tabs, 1)

    # ------------------------------------------------------------------ layers
    def _image_shape(self) -> tuple[int, ...] | None:
        image = self.image_picker.layer() if hasattr(self, "image_picker") else None
        return None if image is None else spatial_shape(image)

    def _is_painted_labels(self, layer: Labels | Image) -> bool:
        image = self.image_picker.layer() if hasattr(self, "image_picker") else None
        return (
            handoff(layer) is None
            and layer is not image
            and tuple(layer.data.shape) == self._image_shape()
        )

    def _is_teacher_prediction(self, layer: Labels) -> bool:
        role = (handoff(layer) or {}).get("role")
        return role == TEACHER_ROLE and tuple(layer.data.shape) == self._image_shape()

    def _image_changed(self, *_) -> None:
        self.labels_picker.refresh()
        self.teacher_picker.refresh()
        self._teacher_changed()

    def _teacher_changed(self, *_) -> None:
        self.review.set_layer(self.teacher_picker.layer())
        self.project_review.refresh()
        self._update_summary()
        self._update_buttons()

    def _update_summary(self, *_) -> None:
        image, labels = self.image_picker.layer(), self.labels_picker.layer()
        teacher = self.teacher_picker.layer()
        if image is None:
            text = "Open an image, train a teacher on it and predict (Teacher widget)."
        elif teacher is None:
            text = (
                f"No teacher prediction of '{image.name}' yet: predict it in the Teacher "
                "widget, or load a teacher file here (Teacher: Load...)."
            )
        elif labels is None:
            text = "No labels layer of the image's shape: choose the teacher's annotations."
        else:
            bundle = handoff(teacher)["bundle"]
            annotated = annotated_slices(np.asarray(labels.data))
            text = (
                f"{len(annotated)} annotated slice(s) in '{labels.name}'; teacher at step "
                f"{bundle.step} with {len(bundle.class_ids)} classes."
            )
        self.summary.setText(text)

    # ------------------------------------------------------------------ fitting
    def fit(self) -> None:
        """Fit the quality classifier on the annotated slices (the Fit button)."""
        image, labels = self.image_picker.layer(), self.labels_picker.layer()
        teacher = self.teacher_picker.layer()
        if image is None or teacher is None:
            show_error(
                "There is no teacher prediction to rate: predict the image in the Teacher "
                "widget, or load a teacher file here (Teacher: Load...), first."
            )
            return
        if labels is None:
            show_error("Choose the labels layer with the annotated slices the teacher learnt.")
            return
        painted = np.array(labels.data, copy=True)  # the user may keep painting meanwhile
        if len(annotated_slices(painted)) == 0:
            show_error(
                f"No slice of '{labels.name}' is annotated: the classifier learns from "
                "annotated slices (their true IoU is known). Paint some, then fit."
            )
            return
        try:
            config = self.fitting.settings.config(tau=self.review.tau_slider.value())
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        self.labels_picker.layer_as_labels()  # an image chosen becomes a labels copy
        shared = handoff(teacher)
        use_cpu_threads()  # automatic: the GUI keeps a core to itself
        self.fitting.panel.start("Making pseudo-labels of varied quality...")
        self._start(
            "fit", fit_quality, shared["bundle"], image_data(image), painted,
            config=config, teacher_snapshots=shared.get("snapshots", ()),
            device=self.device_picker.device(), rgb=image.rgb,
            on_yield=self.fitting.show_record, on_return=self.fitting.set_model,
            on_finish=self._on_fit_finished,  # progress: the fit panel's own bar
            description="Fitting the quality classifier",
            error_message="Fitting the quality classifier failed",
        )  # fmt: skip

    def _on_fit_finished(self, outcome: str) -> None:
        messages = {
            "returned": "Fitted: score the slices next (Review tab).",
            "aborted": "Fitting stopped: no new classifier.",
            "errored": "Fitting failed.",
        }
        self.fitting.panel.finish(messages[outcome])
        self._finished()

    # ------------------------------------------------------------------ scoring
    def _score_clicked(self) -> None:
        if self._job == "score":
            self.runner.stop()
            self.score_button.setEnabled(False)
        else:
            self.score()

    def score(self) -> None:
        """Score every slice of the chosen teacher prediction (the Score button)."""
        image, teacher = self.image_picker.layer(), self.teacher_picker.layer()
        if self.fitting.quality is None or image is None or teacher is None:
            show_error("Fit or load a quality classifier and choose a teacher prediction first.")
            return
        labels = self.labels_picker.layer()
        annotated = [] if labels is None else annotated_slices(np.asarray(labels.data))
        self.score_bar.setRange(0, 0)  # busy until the first slice says how many
        self._start(
            "score", score_slices, self.fitting.quality, image_data(image),
            handoff(teacher)["probabilities"], device=self.device_picker.device(),
            rgb=image.rgb, on_yield=self._on_score_progress,
            on_return=lambda scores: self._on_scored(teacher, annotated, scores),
            on_finish=lambda _outcome: self._finished(), progress=lambda p: (p.done, p.total),
            description="Scoring slices", error_message="Scoring the slices failed",
        )  # fmt: skip

    def _on_score_progress(self, record) -> None:
        self.score_bar.setRange(0, max(1, record.total))
        self.score_bar.setValue(record.done)

    def _on_scored(self, layer: Labels, annotated, scores: SliceScores) -> None:
        if layer not in self.viewer.layers:
            show_error(f"'{layer.name}' was removed while its slices were scored.")
            return
        selection = scores.selection(self.review.tau_slider.value(), annotated)
        previous = self.review.selection if self.review.layer is layer else None
        for index, accepted in (previous.overrides if previous is not None else {}).items():
            # scoring again keeps the user's decisions on slices that are still pseudo-labelled
            if index in selection.scores and index not in selection.annotated:
                (selection.accept if accepted else selection.reject)(index)
        self.review.show_selection(layer, selection)
        self.tabs.setCurrentIndex(1)
        self.review.jump_to_worst()

    def _load_teacher_clicked(self) -> None:
        if self._job == "predict":
            self.runner.stop()
            self.load_teacher_button.setEnabled(False)
            return
        image = self.image_picker.layer()
        if image is None:
            show_error("Open the image first: the loaded teacher predicts it.")
            return
        loaded = ask_load_model(self, "Load teacher", "teacher")
        if loaded is None:
            return
        self._start(
            "predict", teacher_prediction, loaded[0], image_data(image),
            SourceLayer.from_layer(image), self.device_picker.device(), False,
            on_return=self._on_teacher_predicted, on_finish=lambda _outcome: self._finished(),
            progress=lambda p: (p.done, p.total), description="Teacher prediction",
            error_message="Teacher prediction failed",
        )  # fmt: skip
        self.summary.setText(f"Predicting '{image.name}' with {loaded[1].name}...")

    def _on_teacher_predicted(self, layer_data: list) -> None:
        added = add_layer_data(self.viewer, layer_data)
        self.teacher_picker.select(added[0])

    # ------------------------------------------------------------------ state
    def _start(self, job: str, function, *args, **kwargs) -> None:
        self._job = job
        self.runner.start(function, *args, **kwargs)
        self._update_buttons()

    def _finished(self) -> None:
        self._job = None
        if self.score_bar.maximum() == 0:
            self.score_bar.setRange(0, 1)
        self._update_summary()
        self._update_buttons()

    def _update_buttons(self) -> None:
        job, has_teacher = self._job, self.teacher_picker.layer() is not None
        self.fitting.panel.train_button.setEnabled(job is None)
        self.fitting.set_busy(job is not None)
        self.score_button.setText("Cancel" if job == "score" else "Score slices")
        self.score_button.setEnabled(
            job == "score" or (job is None and self.fitting.quality is not None and has_teacher)
        )
        self.load_teacher_button.setText("Cancel" if job == "predict" else "Load...")
        self.load_teacher_button.setEnabled(job in (None, "predict"))

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.review.detach()
        super().closeEvent(event)
