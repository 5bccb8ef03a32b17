"""What a cells task learns from: the fields (an Image layer), the painted cells (a Labels
layer with a plane axis in front, see :mod:`.cells_layers`) and the painted nuclei (a Labels
layer of the image's shape), with a line saying which fields are painted and how many cells.
Shared by the Teacher's and the Student's cells tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_distill._widgets.common.cells_layers import (
    add_plane,
    count_painted,
    fits_cells,
    new_cells_layer_data,
    planes_of_layer,
)
from napari_distill._widgets.common.handoff import (
    METADATA_KEY,
    SourceLayer,
    add_layer_data,
    image_data,
    make_unique_name,
    output_name,
    spatial_shape,
)
from napari_distill._widgets.common.layers import LayerPicker

if TYPE_CHECKING:
    import napari


def _predicted(layer: Labels) -> bool:
    """A layer a napari-distill prediction added (painting is what the user made)."""
    return METADATA_KEY in layer.metadata


class CellInputError(ValueError):
    """The chosen layers cannot be trained on; the message says what to do."""


@dataclass(frozen=True)
class CellLayers:
    """The painted data, copied on the GUI thread (the user may keep painting meanwhile)."""

    image: Any  # (N, H, W[, 3]) fields
    planes: np.ndarray  # (N, P, H, W)
    nuclei: np.ndarray  # (N, H, W)
    rgb: bool
    source: SourceLayer


class CellInputsForm(QWidget):
    """Image, Cells and Nuclei pickers, buttons that add empty layers to paint, and a summary.

    Signals
    -------
    changed:
        A choice or the painting changed (the summary was updated).
    """

    changed = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.image_picker = LayerPicker(viewer, Image)
        self.cells_picker = LayerPicker(viewer, Labels, accept=self._fits_cells)
        self.nuclei_picker = LayerPicker(viewer, Labels, accept=self._fits_nuclei)
        self.image_picker.setToolTip("The Pap smear fields: a stack (N, H, W), grey or RGB.")
        self.cells_picker.setToolTip(
            "Painted cells: a Labels layer with a plane axis in front of the image's axes "
            "(plane, field, y, x). Paint every cell whole in a plane where it touches no other "
            "cell, each cell its own id. A field without any cell counts as unpainted."
        )
        self.nuclei_picker.setToolTip(
            "Painted nuclei: a Labels layer of the image's shape, one id per nucleus, on the "
            "fields whose cells are painted."
        )
        self.new_cells_button = QPushButton("New cells layer")
        self.new_cells_button.setToolTip("Add an empty cells layer (3 planes) to paint in.")
        self.new_nuclei_button = QPushButton("New nuclei layer")
        self.new_nuclei_button.setToolTip("Add an empty nuclei layer to paint in.")
        self.add_plane_button = QPushButton("Add plane")
        self.add_plane_button.setToolTip(
            "Give the cells layer one more empty plane, for a cell that overlaps a cell in "
            "every plane (nothing painted changes)."
        )
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self._timer = QTimer(self)  # count at most a few times a second while painting
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.update_summary)

        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Image", self.image_picker)
        form.addRow("Cells", self.cells_picker)
        form.addRow("Nuclei", self.nuclei_picker)
        buttons = QHBoxLayout()
        for button in (self.new_cells_button, self.new_nuclei_button, self.add_plane_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.summary)

        self.image_picker.currentIndexChanged.connect(self._image_changed)
        for picker in (self.cells_picker, self.nuclei_picker):
            picker.currentIndexChanged.connect(self.schedule_summary)
        self.new_cells_button.clicked.connect(self.new_cells_layer)
        self.new_nuclei_button.clicked.connect(self.new_nuclei_layer)
        self.add_plane_button.clicked.connect(self._add_plane)
        viewer.layers.events.inserted.connect(lambda event: self._watch(event.value))
        for layer in viewer.layers:
            self._watch(layer)
        self._image_changed()

    # ------------------------------------------------------------------ layers
    def _spatial(self) -> tuple[int, ...] | None:
        image = self.image_picker.layer() if hasattr(self, "image_picker") else None
        return None if image is None else spatial_shape(image)

    def _fits_cells(self, layer: Labels) -> bool:
        spatial = self._spatial()
        return spatial is not None and fits_cells(layer, spatial) and not _predicted(layer)

    def _fits_nuclei(self, layer: Labels) -> bool:
        spatial = self._spatial()
        return spatial is not None and tuple(layer.data.shape) == spatial and not _predicted(layer)

    def _watch(self, layer: Any) -> None:
        if isinstance(layer, Labels):
            layer.events.paint.connect(self.schedule_summary)
            layer.events.data.connect(self.schedule_summary)

    def _image_changed(self, *_: Any) -> None:
        self.cells_picker.refresh()
        self.nuclei_picker.refresh()
        self.update_summary()

    def new_cells_layer(self) -> None:
        """Add an empty cells layer for the chosen image, and choose it."""
        image = self.image_picker.layer()
        if image is None:
            return
        data, kwargs, _ = new_cells_layer_data(self._spatial(), SourceLayer.from_layer(image))
        (layer,) = add_layer_data(self.viewer, [(data, kwargs, "labels")])
        self.cells_picker.select(layer)

    def new_nuclei_layer(self) -> None:
        """Add an empty nuclei layer for the chosen image, and choose it."""
        image = self.image_picker.layer()
        if image is None:
            return
        source = SourceLayer.from_layer(image)
        layer = self.viewer.add_labels(
            np.zeros(self._spatial(), np.uint32),
            name=make_unique_name(self.viewer, output_name(source.name, "nuclei")),
            scale=source.scale, translate=source.translate,
        )  # fmt: skip
        self.nuclei_picker.select(layer)

    def _add_plane(self) -> None:
        layer = self.cells_picker.layer()
        if layer is not None:
            add_plane(layer)

    # ------------------------------------------------------------------ summary
    def schedule_summary(self, *_: Any) -> None:
        """Recount soon (painting sends many events)."""
        self._timer.start()

    def one_field(self) -> bool:
        """Whether the image is a single field ``(H, W)``."""
        spatial = self._spatial()
        return spatial is not None and len(spatial) == 2

    def update_summary(self) -> None:
        """Say which fields are painted and how many cells, overlaps and nuclei."""
        image, cells = self.image_picker.layer(), self.cells_picker.layer()
        nuclei = self.nuclei_picker.layer()
        self.add_plane_button.setEnabled(cells is not None)
        self.new_cells_button.setEnabled(image is not None)
        self.new_nuclei_button.setEnabled(image is not None)
        if image is None:
            self.summary.setText("Open the Pap smear fields (an image layer) to start.")
        elif cells is None:
            self.summary.setText(
                f"No cells layer fits the image {self._spatial()}: press New cells layer "
                "(planes in front of the image's axes) and paint a few fields."
            )
        else:
            planes = planes_of_layer(cells.data, self.one_field())
            stack = None if nuclei is None else np.asarray(nuclei.data)
            if stack is not None and self.one_field():
                stack = stack[None]
            text = count_painted(planes, stack).text()
            if nuclei is None:
                text += " No nuclei layer: press New nuclei layer and paint the nuclei."
            self.summary.setText(text)
        self.changed.emit()

    # ------------------------------------------------------------------ reading
    def read(self) -> CellLayers:
        """Copies of the chosen layers' data.

        Raises
        ------
        CellInputError
            A layer is missing or nothing is painted.
        """
        image, cells = self.image_picker.layer(), self.cells_picker.layer()
        nuclei = self.nuclei_picker.layer()
        if image is None or cells is None or nuclei is None:
            raise CellInputError(
                "Choose the fields, a cells layer and a nuclei layer first (New cells layer / "
                "New nuclei layer add empty ones)."
            )
        one = self.one_field()
        planes = np.array(planes_of_layer(cells.data, one), copy=True)
        painted = np.array(nuclei.data, copy=True)
        if one:
            painted = painted[None]
        if not planes.any():
            raise CellInputError(f"No cell is painted in '{cells.name}': paint the cells of a "
                                 "few fields (and their nuclei), then train.")  # fmt: skip
        data = np.asarray(image_data(image))
        source = SourceLayer.from_layer(image)
        return CellLayers(data[None] if one else data, planes, painted, source.rgb, source)
