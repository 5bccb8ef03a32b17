"""The Teacher dock's *Overlapping cells* task: train the cell model on the painted fields of
a Pap smear stack, then predict every field's cells whole (planes) and nuclei.

Wiring only: the run is built by :func:`napari_distill.core.strategies.cell_runs.teacher_cell_run`
(or resumed by ``resume_cell_run``) and trained in the dock's worker by a
:class:`~napari_distill._widgets.common.cells_session.CellSession`; the prediction comes back
as layer data (:mod:`napari_distill._widgets.common.cells_layers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtWidgets import QFormLayout, QGroupBox, QVBoxLayout, QWidget

from napari_distill._widgets.common.cells_inputs import CellInputError, CellInputsForm
from napari_distill._widgets.common.cells_layers import CELL_TEACHER_ROLE
from napari_distill._widgets.common.cells_model_box import CellModelBox
from napari_distill._widgets.common.cells_session import CellSession
from napari_distill._widgets.common.config_form import ConfigForm
from napari_distill._widgets.common.device import DevicePicker, use_cpu_threads
from napari_distill._widgets.common.training_panel import TrainingPanel
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.training.cells import CellTrainConfig

if TYPE_CHECKING:
    import napari

    from napari_distill.core.training.cells import CellTrainingRun


def build_teacher_run(
    image: Any, planes: Any, nuclei: Any, rgb: bool, train_config: CellTrainConfig,
    device: str, resume_from: Path | None,
) -> CellTrainingRun:  # fmt: skip
    """A new cell teacher on the painted fields, or the one saved in ``resume_from``."""
    from napari_distill.core.strategies.cell_runs import new_or_resumed_cell_run, teacher_cell_run

    def new(inputs, selected: str) -> CellTrainingRun:
        return teacher_cell_run(inputs, train_config=train_config, device=selected)

    return new_or_resumed_cell_run(
        new, image, planes, nuclei, rgb, device=device, resume_from=resume_from
    )


class TeacherCellsTask(QWidget):
    """Cells, nuclei, settings, Train / Stop / Resume with the live curve, and the model box.

    Parameters
    ----------
    viewer:
        The viewer whose layers are read and added to.
    dock:
        The dock widget owning the worker (closing it stops a run).
    """

    def __init__(self, viewer: napari.viewer.Viewer, dock: QWidget) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = WorkerRunner(dock, "Cell teacher")
        self.inputs = CellInputsForm(viewer)
        self.device_picker = DevicePicker()
        self.settings = ConfigForm(CellTrainConfig)
        self.panel = TrainingPanel(
            train_text="Train cell teacher",
            score_label=None,
            resume_tooltip="Continue the stopped run, or the loaded cell teacher, where it "
            "stopped (same painted fields).",
            plot_hint="The training loss (nuclei + cells) appears here.",
        )
        self.session = CellSession(self.runner, self.panel, "teacher", self._after_training)
        self.model_box = CellModelBox(
            viewer, self.session, self.inputs.image_picker.layer, self.device_picker.device,
            "teacher", CELL_TEACHER_ROLE, self._update_buttons,
        )  # fmt: skip
        settings_box = QGroupBox("Training")
        settings_layout = QVBoxLayout(settings_box)
        settings_layout.addWidget(self.settings)
        device_row = QFormLayout()
        device_row.setContentsMargins(0, 0, 0, 0)
        device_row.addRow("Device", self.device_picker)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.inputs)
        layout.addLayout(device_row)
        layout.addWidget(settings_box)
        layout.addWidget(self.panel)
        layout.addWidget(self.model_box)
        layout.addStretch(1)

        self.panel.train_clicked.connect(self.train)
        self.panel.stop_clicked.connect(self.runner.stop)
        self.panel.resume_clicked.connect(self.resume)
        self.model_box.load_button.clicked.connect(self.load_model)
        self.inputs.changed.connect(self._update_buttons)
        self._update_buttons()

    def train(self, resume_from: Path | None = None) -> None:
        """Train a new cell teacher on the painted fields (the Train button)."""
        try:
            layers = self.inputs.read()
            train_config = self.settings.config()
        except CellInputError as error:
            show_error(str(error))
            return
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        use_cpu_threads()
        self.session.start(
            build_teacher_run, layers.image, layers.planes, layers.nuclei, layers.rgb,
            train_config, self.device_picker.device(), resume_from,
        )  # fmt: skip
        self._update_buttons()

    def resume(self) -> None:
        """Continue the stopped run, or the loaded checkpoint on the painted layers."""
        self.session.resume(lambda path: self.train(resume_from=path))
        self._update_buttons()

    def load_model(self) -> None:
        """Ask for a cell teacher checkpoint: predict with it, or Resume its training."""
        if self.session.load(self):
            saved = self.session.extra.get("train_config")
            if saved:
                self.settings.show_config(CellTrainConfig(**saved))
            self.model_box.describe(self.model_box.loaded_text())

    def _after_training(self) -> None:
        self.model_box.describe()
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.runner.is_running
        training = busy and self.panel.stop_button.isEnabled()
        self.panel.train_button.setEnabled(not busy)
        self.panel.resume_button.setEnabled(not busy and self.session.resumable)
        self.settings.setEnabled(not busy)
        self.inputs.setEnabled(not training)
        self.model_box.update_buttons(busy)
