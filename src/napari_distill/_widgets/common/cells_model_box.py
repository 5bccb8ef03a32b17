"""The *Model* box of a cells task: what the model is, Save / Load, Predict (cell planes and
nuclei as new layers, never replacing one) and the per-cell table of the last prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_distill._widgets.common.cells_layers import (
    add_cell_layers,
    cell_prediction,
    prediction_planes,
)
from napari_distill._widgets.common.cells_table import CellTable
from napari_distill._widgets.common.handoff import SourceLayer, image_data

if TYPE_CHECKING:
    import napari
    from napari.layers import Image

    from napari_distill._widgets.common.cells_session import CellSession


class CellModelBox(QGroupBox):
    """Model description, Save, Load, Predict and the table of the predicted cells.

    Parameters
    ----------
    viewer, session:
        The viewer the layers go to; the task's :class:`CellSession` (its runner predicts).
    image:
        Returns the image layer to predict (the task's Image picker).
    device:
        Returns the device to predict on.
    label, role:
        The new layers' names (``"<image> <label> cells k"``) and hand-off role.
    on_change:
        Called after a prediction ends or starts (the task updates its buttons).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        session: CellSession,
        image: Callable[[], Image | None],
        device: Callable[[], str],
        label: str,
        role: str,
        on_change: Callable[[], None],
    ) -> None:
        super().__init__("Model")
        self.viewer, self.session, self.image, self.device = viewer, session, image, device
        self.label, self.role, self.on_change = label, role, on_change
        self.model_label = QLabel(f"No {label} yet: train one or load one.")
        self.model_label.setWordWrap(True)
        self.save_button = QPushButton("Save model...")
        self.save_button.setToolTip(f"Save the {label} (resumable: Load it, then Resume).")
        self.load_button = QPushButton("Load model...")
        self.load_button.setToolTip(f"Load a cell {label} saved earlier, to predict or resume.")
        self.predict_button = QPushButton("Predict cells")
        self.predict_button.setToolTip(
            "Find the nuclei and every cell whole on every field; adds the nuclei and one "
            "outline layer per plane (overlapping cells lie in different planes)."
        )
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.table = CellTable(viewer)
        files = QHBoxLayout()
        files.addWidget(self.save_button)
        files.addWidget(self.load_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.model_label)
        layout.addLayout(files)
        layout.addWidget(self.predict_button)
        layout.addWidget(self.status)
        layout.addWidget(self.table)
        self.table.hide()  # until a prediction fills it
        self.save_button.clicked.connect(lambda: session.save(self))
        self.predict_button.clicked.connect(self._predict_clicked)

    def describe(self, prefix: str = "") -> None:
        """Say what the model is (after training or loading)."""
        if self.session.model is None:
            self.model_label.setText(f"No {self.label} yet: train one or load one.")
            return
        extra = self.session.extra
        fields = extra.get("annotated") or []
        self.model_label.setText(
            f"{prefix}cell {self.label} ({extra.get('strategy', 'supervised')}) at step "
            f"{self.session.step}, learnt from {len(fields)} painted field(s); window "
            f"{self.session.model.config.window} px around each nucleus."
        )

    def update_buttons(self, busy: bool) -> None:
        """Enable what can be done now."""
        has_model = self.session.model is not None
        predicting = busy and self.predict_button.text() == "Cancel"
        self.save_button.setEnabled(not busy and has_model)
        self.load_button.setEnabled(not busy)
        self.predict_button.setEnabled(has_model and (predicting or not busy))

    # ------------------------------------------------------------------ prediction
    def _predict_clicked(self) -> None:
        runner = self.session.runner
        if runner.is_running:
            runner.stop()
            self.predict_button.setEnabled(False)
        else:
            self.predict()

    def predict(self) -> None:
        """Predict the chosen fields with the model (the Predict button)."""
        image = self.image()
        if self.session.model is None or image is None:
            show_error(f"Train or load a cell {self.label} and choose the fields first.")
            return
        self.session.runner.start(
            cell_prediction, self.session.model, image_data(image), SourceLayer.from_layer(image),
            self.device(), self.label, self.role, on_return=self._on_predicted,
            on_finish=self._on_finished, progress=lambda p: (p.done, p.total),
            description=f"Cell {self.label} prediction",
            error_message=f"Cell {self.label} prediction failed",
        )  # fmt: skip
        self.predict_button.setText("Cancel")
        self.status.setText("Predicting...")
        self.on_change()

    def _on_predicted(self, layer_data: list) -> None:
        added = add_cell_layers(self.viewer, layer_data)
        planes, plane_layers = prediction_planes(self.viewer, added[0])
        self.table.show_cells(planes, plane_layers, one_field=added[0].ndim == 2)
        self.table.show()
        overlapping = sum(1 for row in self.table.rows if row.overlaps)
        self.status.setText(
            f"{len(self.table.rows)} cells ({overlapping} overlapping another) in "
            f"{len(plane_layers)} plane layer(s), and {added[0].name!r}. Choose a row to show "
            "a cell."
        )

    def _on_finished(self, outcome: str) -> None:
        self.predict_button.setText("Predict cells")
        if outcome == "aborted":
            self.status.setText("Prediction cancelled.")
        self.on_change()

    def loaded_text(self) -> Any:
        """The loaded file's name, for :meth:`describe`'s prefix."""
        loaded = self.session.loaded
        return "" if loaded is None else f"Loaded from {loaded[0].name}: "
