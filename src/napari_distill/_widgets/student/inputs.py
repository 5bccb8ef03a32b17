"""What the student learns from: the image, the sparse labels, the teacher and its slice selection.

A view over the layer list and two files. The teacher is either a teacher prediction layer (made
by the Teacher widget; it carries the teacher's model, and the Quality review widget adds the
accepted slices as ``"selection"``, see :mod:`napari_distill._widgets.common.handoff`) or a teacher
checkpoint file. The accepted slices come from a scores file (CSV / JSON written by the Quality
review or the CLI) when one is loaded, else from the teacher layer's selection, else there are
none (the student then learns from the annotated slices only).

:meth:`StudentInputsForm.inputs` gathers everything on the GUI thread (copies of what the user
may keep editing) for a worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error
from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_distill._widgets.common.handoff import (
    ask_load_model,
    handoff,
    image_data,
    spatial_shape,
    teacher_prediction_layers,
)
from napari_distill._widgets.common.layers import LayerPicker
from napari_distill._widgets.student.weak_inputs import WeakInputs, WeakInputsError
from napari_distill.core.preprocess import annotated_slices
from napari_distill.core.quality import Selection, SelectionFileError

if TYPE_CHECKING:
    import napari

    from napari_distill.core.models import ModelBundle

SCORES_FILTER = "Slice scores (*.csv *.json);;All files (*)"
FILE_ENTRY = "file"  # the teacher combo's data for the teacher loaded from a checkpoint


class InputError(ValueError):
    """Something the student needs is missing or does not fit; the message says what to do."""


@dataclass
class StudentInputs:
    """Everything a student run needs, read on the GUI thread.

    Attributes
    ----------
    image_layer:
        The image layer (its data is passed to the worker, read-only).
    labels:
        A copy of the sparse labels (the user may keep painting meanwhile).
    teacher:
        The teacher model.
    accepted:
        The unannotated slices accepted for pseudo-labels (ascending).
    pseudo_labels:
        The teacher layer's labels as ``(N, H, W)`` (with the user's corrections), or None
        when the teacher comes from a file (it then predicts the accepted slices itself).
    weak:
        For a strategy that takes weak labels: ``{"weak_labels": scribbles or None,
        "points": rows (slice, y, x, class) or None, "tags": {slice: classes} or None}``;
        empty otherwise.
    """

    image_layer: Image
    labels: np.ndarray
    teacher: ModelBundle
    accepted: list[int]
    pseudo_labels: np.ndarray | None
    weak: dict[str, Any] = field(default_factory=dict)

    @property
    def image(self) -> Any:
        return image_data(self.image_layer)


class StudentInputsForm(QWidget):
    """Image, labels, teacher and slice-selection pickers with a summary of the slices used.

    Signals
    -------
    changed:
        Any choice changed (the owner refreshes its buttons).
    """

    changed = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.file_teacher: tuple[ModelBundle, Path] | None = None
        self.file_selection: tuple[Selection, Path] | None = None

        self.image_picker = LayerPicker(viewer, Image)
        self.image_picker.setToolTip("The image the teacher segmented.")
        self.labels_picker = LayerPicker(
            viewer, Labels, accept=self._is_sparse_labels, images_as_labels=True
        )
        self.labels_picker.setToolTip(
            "The sparse annotations the teacher was trained on (ground truth on the painted "
            "slices)."
        )
        self.teacher_box = QComboBox()
        self.teacher_box.setPlaceholderText("no teacher")
        self.teacher_box.setMinimumContentsLength(12)
        self.teacher_box.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.teacher_box.setToolTip(
            "A teacher prediction layer (Teacher widget > Predict), or a teacher checkpoint "
            "file loaded with 'Load teacher...'."
        )
        self.load_teacher_button = QPushButton("Load teacher...")
        self.load_teacher_button.setToolTip("Use a teacher saved as a checkpoint file.")
        self.scores_button = QPushButton("Scores file...")
        self.scores_button.setToolTip(
            "Load slice scores (CSV or JSON from the Quality review or the command line): their "
            "accepted slices are used instead of the teacher layer's selection."
        )
        self.clear_scores_button = QPushButton("Clear")
        self.clear_scores_button.setToolTip("Forget the scores file.")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.weak = WeakInputs(viewer, self.image_picker.layer, self.labels_picker.layer)
        self.weak.setVisible(False)
        self.wants_weak = False
        self.uses_selection = True
        self._build_layout()

        self.image_picker.currentIndexChanged.connect(self._image_changed)
        self.labels_picker.currentIndexChanged.connect(self.update_summary)
        self.labels_picker.currentIndexChanged.connect(self.weak.refresh)
        self.weak.scribbles_picker.currentIndexChanged.connect(self.update_summary)
        self.weak.points_picker.currentIndexChanged.connect(self.update_summary)
        self.weak.tags_panel.changed.connect(self.update_summary)
        self.teacher_box.currentIndexChanged.connect(self._teacher_changed)
        self.load_teacher_button.clicked.connect(self.load_teacher)
        self.scores_button.clicked.connect(self.load_scores)
        self.clear_scores_button.clicked.connect(self.clear_scores)
        layers = viewer.layers.events
        for event in (layers.inserted, layers.removed, layers.changed):
            event.connect(self.refresh_teachers)
        layers.inserted.connect(self._watch_layer)
        for layer in viewer.layers:
            self._watch_layer_events(layer)
        self.refresh_teachers()
        self._image_changed()

    def _build_layout(self) -> None:
        files = QHBoxLayout()
        files.addWidget(self.load_teacher_button)
        files.addWidget(self.scores_button)
        files.addWidget(self.clear_scores_button)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Image", self.image_picker)
        form.addRow("Labels", self.labels_picker)
        form.addRow("Teacher", self.teacher_box)
        form.addRow("Files", files)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.weak)
        layout.addWidget(self.summary)

    # ------------------------------------------------------------------ layers
    def _is_sparse_labels(self, layer: Labels | Image) -> bool:
        image = self.image_picker.layer() if hasattr(self, "image_picker") else None
        return (
            image is not None
            and layer is not image
            and handoff(layer) is None  # not a prediction
            and tuple(layer.data.shape) == spatial_shape(image)
        )

    def _image_changed(self, *_: Any) -> None:
        self.labels_picker.refresh()
        self.weak.refresh()
        self.update_summary()

    def show_weak_inputs(self, shown: bool, uses_selection: bool = True) -> None:
        """Offer the weak labels pickers (for a strategy that takes them) or hide them;
        ``uses_selection``: whether the strategy learns from the accepted slices (kd)."""
        self.wants_weak = shown
        self.uses_selection = uses_selection
        self.weak.setVisible(shown)
        self.update_summary()

    def _watch_layer(self, event: Any) -> None:
        self._watch_layer_events(event.value)
        if event.value in teacher_prediction_layers(self.viewer):
            self.teacher_box.setCurrentIndex(self.teacher_box.findText(event.value.name))

    def _watch_layer_events(self, layer: Any) -> None:
        layer.events.name.connect(self.refresh_teachers)
        if isinstance(layer, Labels):
            layer.events.paint.connect(self.update_summary)
            layer.events.data.connect(self.update_summary)

    def refresh_teachers(self, *_: Any) -> None:
        """List the teacher prediction layers, then the teacher file; keep the current one."""
        entries = [(layer.name, layer.name) for layer in teacher_prediction_layers(self.viewer)]
        if self.file_teacher is not None:
            entries.append((f"{self.file_teacher[1].name} (file)", FILE_ENTRY))
        if entries == [
            (self.teacher_box.itemText(i), self.teacher_box.itemData(i))
            for i in range(self.teacher_box.count())
        ]:
            return
        current = self.teacher_box.currentData()
        self.teacher_box.blockSignals(True)
        self.teacher_box.clear()
        for text, data in entries:
            self.teacher_box.addItem(text, data)
        index = self.teacher_box.findData(current)
        self.teacher_box.setCurrentIndex(index if index >= 0 else len(entries) - 1)
        self.teacher_box.blockSignals(False)
        self._teacher_changed()

    def _teacher_changed(self, *_: Any) -> None:
        layer = self.teacher_layer()
        name = (handoff(layer) or {}).get("image_layer") if layer is not None else None
        if name in self.viewer.layers:
            self.image_picker.select(self.viewer.layers[name])
        self.update_summary()

    # ------------------------------------------------------------------ what is chosen
    def teacher_layer(self) -> Labels | None:
        """The chosen teacher prediction layer (None for a file teacher or none)."""
        data = self.teacher_box.currentData()
        if data in (None, FILE_ENTRY) or data not in self.viewer.layers:
            return None
        return self.viewer.layers[data]

    def teacher(self) -> ModelBundle | None:
        """The chosen teacher model, or None."""
        if self.teacher_box.currentData() == FILE_ENTRY and self.file_teacher is not None:
            return self.file_teacher[0]
        layer = self.teacher_layer()
        return None if layer is None else (handoff(layer) or {}).get("bundle")

    def selection(self) -> tuple[Selection | None, str]:
        """The slice selection and where it comes from (a phrase for the summary)."""
        if self.file_selection is not None:
            return self.file_selection[0], f"from {self.file_selection[1].name}"
        layer = self.teacher_layer()
        found = (handoff(layer) or {}).get("selection") if layer is not None else None
        if isinstance(found, Selection):
            return found, f"by the quality review at tau {found.tau:.2f}"
        return None, ""

    def update_summary(self, *_: Any) -> None:
        """Say which teacher is used and how many slices the student learns from."""
        self.clear_scores_button.setEnabled(self.file_selection is not None)
        self.summary.setText(self._summary_text())
        if self.wants_weak:
            labels = self.labels_picker.layer()
            self.weak.describe(None if labels is None else np.asarray(labels.data))
        self.changed.emit()

    def _summary_text(self) -> str:
        image, labels = self.image_picker.layer(), self.labels_picker.layer()
        if image is None or labels is None:
            return "Choose an image and its sparse labels (the ones the teacher learned from)."
        if self.teacher() is None:
            return (
                "No teacher yet: train one and press Predict in the Teacher widget, or load a "
                "teacher checkpoint."
            )
        data = np.asarray(labels.data)
        annotated = set(annotated_slices(data).tolist())
        n_slices = 1 if data.ndim == 2 else data.shape[0]
        if not self.uses_selection:  # mixed, mutual: no pseudo-labels, no slice selection
            return f"Painted slices: {len(annotated)} of {n_slices}."
        selection, source = self.selection()
        accepted = [] if selection is None else sorted(set(selection.accepted) - annotated)
        text = (
            f"Slices used: {len(annotated)} annotated + {len(accepted)} accepted = "
            f"{len(annotated) + len(accepted)} of {n_slices}"
        )
        if selection is None:
            return text + (
                ". No slice selection yet: score the teacher's prediction in the Quality "
                "review widget, or load a scores file."
            )
        return f"{text}; accepted {source}."

    def inputs(self) -> StudentInputs:
        """Gather what a student run needs (copies of what may still change).

        Raises
        ------
        InputError
            No image, labels or teacher, nothing painted, or a teacher layer of another shape.
        """
        image, labels, teacher = (
            self.image_picker.layer(),
            self.labels_picker.layer(),
            self.teacher(),
        )
        if teacher is None:
            raise InputError(
                "No teacher: train a teacher and press Predict in the Teacher widget, or load a "
                "teacher checkpoint with 'Load teacher...'."
            )
        if image is None or labels is None:
            raise InputError("Choose an image and the sparse labels the teacher learned from.")
        painted = np.array(labels.data, copy=True)
        annotated = set(annotated_slices(painted).tolist())
        if not annotated:
            raise InputError(f"Nothing is painted in '{labels.name}': choose the sparse labels.")
        pseudo_labels = None
        layer = self.teacher_layer()
        if layer is not None:
            if tuple(layer.data.shape) != spatial_shape(image):
                raise InputError(
                    f"The teacher layer '{layer.name}' has shape {tuple(layer.data.shape)}, the "
                    f"image '{image.name}' {spatial_shape(image)}: choose the image it predicted."
                )
            pseudo = np.array(layer.data, copy=True)
            pseudo_labels = pseudo.reshape((-1, *pseudo.shape[-2:]))
        selection, _ = self.selection()
        accepted = [] if selection is None else sorted(set(selection.accepted) - annotated)
        weak = self._weak_inputs() if self.wants_weak else {}
        self.labels_picker.layer_as_labels()  # an image chosen becomes a labels copy
        return StudentInputs(image, painted, teacher, accepted, pseudo_labels, weak)

    def _weak_inputs(self) -> dict[str, Any]:
        try:
            weak = {
                "weak_labels": self.weak.scribbles(),
                "points": self.weak.points(),
                "tags": self.weak.tags(),
            }
        except WeakInputsError as error:
            raise InputError(str(error)) from error
        if all(value is None for value in weak.values()):
            raise InputError(
                "This strategy learns from weak labels: choose a layer of scribbles or of "
                "points, or tag slices ('Tag this slice...'), beside the fully painted labels."
            )
        return weak

    # ------------------------------------------------------------------ files
    def load_teacher(self) -> None:
        """Ask for a teacher checkpoint and choose it."""
        loaded = ask_load_model(self, "Load teacher", "teacher")
        if loaded is None:
            return
        self.file_teacher = loaded
        self.refresh_teachers()
        self.teacher_box.setCurrentIndex(self.teacher_box.findData(FILE_ENTRY))

    def load_scores(self) -> None:
        """Ask for a scores file (CSV / JSON) and use its accepted slices."""
        path, _ = QFileDialog.getOpenFileName(self, "Load slice scores", "", SCORES_FILTER)
        if path:
            self.load_scores_file(Path(path))

    def load_scores_file(self, path: Path) -> None:
        """Use the accepted slices of the selection in ``path``."""
        try:
            self.file_selection = (Selection.load(path), path)
        except (SelectionFileError, OSError) as error:
            show_error(f"Could not read the slice scores: {error}")
            return
        self.update_summary()

    def clear_scores(self) -> None:
        """Forget the scores file (the teacher layer's selection applies again)."""
        self.file_selection = None
        self.update_summary()
