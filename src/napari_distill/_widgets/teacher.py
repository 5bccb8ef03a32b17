"""Teacher dock widget: pick the image and its sparse labels, see what is annotated."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget

from napari_distill._widgets._device import DevicePicker
from napari_distill._widgets._layers import LayerPicker
from napari_distill.core.preprocess import annotated_slices, class_ids_from_labels

if TYPE_CHECKING:
    import napari


def spatial_shape(layer: Image) -> tuple[int, ...]:
    """The image layer's shape without its colour axis."""
    return tuple(layer.data.shape[:-1] if layer.rgb else layer.data.shape)


class TeacherWidget(QWidget):
    """Train a teacher on the annotated slices of a labels layer, then predict the rest."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.image_picker = LayerPicker(viewer, Image)
        self.labels_picker = LayerPicker(viewer, Labels, accept=self._labels_match_image)
        self.device_picker = DevicePicker()
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_picker)
        form.addRow("Labels", self.labels_picker)
        form.addRow("Device", self.device_picker)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addStretch(1)

        self.image_picker.currentIndexChanged.connect(self._image_changed)
        self.labels_picker.currentIndexChanged.connect(self._update_summary)
        viewer.layers.events.inserted.connect(self._watch_labels)
        for layer in viewer.layers:
            self._watch_labels_layer(layer)
        self._image_changed()

    def _labels_match_image(self, layer: Labels) -> bool:
        image = self.image_picker.layer() if hasattr(self, "image_picker") else None
        return image is not None and tuple(layer.data.shape) == spatial_shape(image)

    def _image_changed(self, *_) -> None:
        self.labels_picker.refresh()
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
        classes = [c for c in class_ids_from_labels(data) if c != 0]
        if len(annotated) == 0:
            self.summary.setText(
                "No slice is annotated yet: paint at least one slice with two or more "
                "labels (0 is background in an annotated slice)."
            )
            return
        self.summary.setText(
            f"{len(annotated)} of {n_slices} slices annotated; classes {classes}. "
            f"Training would run on {self.device_picker.summary()}."
        )
