"""The Student dock's *Overlapping cells* task: a student that starts from the cell teacher and
learns the painted fields (``supervised``) or, besides, the unpainted ones from its own
exponential-moving-average teacher (``mean-teacher``, MMT-PSM; docs/cells.md).

Wiring only: the run is built by :func:`napari_distill.core.strategies.cell_runs.student_cell_run`
(or resumed by ``resume_cell_run``, the EMA teacher and optimiser included) and trained in the
dock's worker by a :class:`~napari_distill._widgets.common.cells_session.CellSession`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_distill._widgets.common.cells_inputs import CellInputError, CellInputsForm
from napari_distill._widgets.common.cells_layers import CELL_STUDENT_ROLE, cell_teacher_layers
from napari_distill._widgets.common.cells_model_box import CellModelBox
from napari_distill._widgets.common.cells_session import CellSession
from napari_distill._widgets.common.config_form import ConfigForm
from napari_distill._widgets.common.device import DevicePicker, use_cpu_threads
from napari_distill._widgets.common.handoff import CHECKPOINT_FILTER, METADATA_KEY
from napari_distill._widgets.common.training_panel import TrainingPanel
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.models.cells import CellModel, load_cell_model
from napari_distill.core.strategies.cell_configs import MeanTeacherConfig
from napari_distill.core.training.cells import CellTrainConfig

if TYPE_CHECKING:
    import napari

    from napari_distill.core.training.cells import CellTrainingRun

STRATEGIES = {
    "mean-teacher": "The student also learns the unpainted fields from its own running-average "
    "teacher: several jittered and mirrored views, the pixels they disagree on mined, inner "
    "features copied inside the cells (MMT-PSM, Zhou et al. 2020). Needs unpainted fields.",
    "supervised": "The student keeps learning your painted fields alone, for the same steps: "
    "the control that shows what the unpainted fields add.",
}


def build_student_run(
    strategy: str, teacher: CellModel | None, image: Any, planes: Any, nuclei: Any, rgb: bool,
    train_config: CellTrainConfig, settings: MeanTeacherConfig, device: str,
    resume_from: Path | None,
) -> CellTrainingRun:  # fmt: skip
    """A new student of ``teacher``, or the one saved in ``resume_from`` (EMA teacher too)."""
    from napari_distill.core.strategies.cell_runs import new_or_resumed_cell_run, student_cell_run

    def new(inputs, selected: str) -> CellTrainingRun:
        return student_cell_run(strategy, teacher, inputs, train_config, settings, selected)

    return new_or_resumed_cell_run(
        new, image, planes, nuclei, rgb, device=device, resume_from=resume_from
    )


class StudentCellsTask(QWidget):
    """Teacher, painted layers, strategy and its settings, Train / Stop / Resume, the model."""

    def __init__(self, viewer: napari.viewer.Viewer, dock: QWidget) -> None:
        super().__init__()
        self.viewer = viewer
        self.runner = WorkerRunner(dock, "Cell student")
        self._loaded_teacher: tuple[str, CellModel] | None = None
        self.teacher_box = QComboBox()
        self.teacher_box.setToolTip("The cell teacher the student starts from: a prediction of "
                                    "the Teacher dock's cells task, or a file.")  # fmt: skip
        self.load_teacher_button = QPushButton("Load...")
        self.load_teacher_button.setToolTip("Load a cell teacher saved from the Teacher dock.")
        self.inputs = CellInputsForm(viewer)
        self.strategy_box = QComboBox()
        for name, text in STRATEGIES.items():
            self.strategy_box.addItem(name, name)
            self.strategy_box.setItemData(self.strategy_box.count() - 1, text,
                                          Qt.ItemDataRole.ToolTipRole)  # fmt: skip
        self.strategy_form = ConfigForm(MeanTeacherConfig)
        self.settings = ConfigForm(CellTrainConfig)
        self.device_picker = DevicePicker()
        self.panel = TrainingPanel(
            train_text="Train cell student", score_label=None,
            resume_tooltip="Continue the stopped run, or the loaded cell student, where it "
            "stopped: the student, its running-average teacher and optimiser as they were.",
            plot_hint="The training loss (painted + unpainted fields) appears here.",
        )  # fmt: skip
        self.session = CellSession(self.runner, self.panel, "student", self._after_training)
        self.model_box = CellModelBox(
            viewer, self.session, self.inputs.image_picker.layer, self.device_picker.device,
            "student", CELL_STUDENT_ROLE, self._update_buttons,
        )  # fmt: skip
        self._build_layout()
        self.load_teacher_button.clicked.connect(self.load_teacher)
        self.strategy_box.currentIndexChanged.connect(self._strategy_changed)
        self.panel.train_clicked.connect(self.train)
        self.panel.stop_clicked.connect(self.runner.stop)
        self.panel.resume_clicked.connect(self.resume)
        self.model_box.load_button.clicked.connect(self.load_model)
        self.inputs.changed.connect(self._update_buttons)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self.refresh_teachers)
        self.refresh_teachers()
        self._strategy_changed()

    def _build_layout(self) -> None:
        teacher_row = QHBoxLayout()
        teacher_row.addWidget(self.teacher_box, 1)
        teacher_row.addWidget(self.load_teacher_button)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Teacher", teacher_row)
        strategy = QGroupBox("Strategy")
        strategy_layout = QVBoxLayout(strategy)
        strategy_layout.addWidget(self.strategy_box)
        self.strategy_settings = QCollapsible("Mean-teacher settings")  # closed: the defaults
        self.strategy_settings.addWidget(self.strategy_form)  # are the paper's
        strategy_layout.addWidget(self.strategy_settings)
        training = QGroupBox("Training")
        training_layout = QFormLayout(training)
        training_layout.addRow("Device", self.device_picker)
        training_layout.addRow(self.settings)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.inputs)
        layout.addWidget(strategy)
        layout.addWidget(training)
        layout.addWidget(self.panel)
        layout.addWidget(self.model_box)
        layout.addStretch(1)

    # ------------------------------------------------------------------ teacher
    def refresh_teachers(self, *_: Any) -> None:
        """Offer the Teacher dock's cell predictions (newest first) and a loaded file."""
        current = self.teacher_box.currentText()
        self.teacher_box.clear()
        for layer in reversed(cell_teacher_layers(self.viewer)):
            self.teacher_box.addItem(layer.name, layer.metadata[METADATA_KEY]["model"])
        if self._loaded_teacher is not None:
            self.teacher_box.addItem(*self._loaded_teacher)
        index = self.teacher_box.findText(current)
        self.teacher_box.setCurrentIndex(max(index, 0))
        self._update_buttons()

    def teacher(self) -> CellModel | None:
        """The chosen cell teacher, or None."""
        return self.teacher_box.currentData()

    def load_teacher(self) -> None:
        """Ask for a cell teacher file and choose it."""
        path, _ = QFileDialog.getOpenFileName(self, "Load cell teacher", "", CHECKPOINT_FILTER)
        if not path:
            return
        try:
            model, _step, _extra = load_cell_model(path)
        except (OSError, ValueError, RuntimeError) as error:
            show_error(f"Could not load a cell teacher: {error}")
            return
        self._loaded_teacher = (f"{Path(path).name} (file)", model)
        self.refresh_teachers()
        self.teacher_box.setCurrentIndex(self.teacher_box.count() - 1)

    # ------------------------------------------------------------------ training
    def strategy(self) -> str:
        """``"mean-teacher"`` or ``"supervised"``."""
        return str(self.strategy_box.currentData())

    def _strategy_changed(self, *_: Any) -> None:
        self.strategy_box.setToolTip(STRATEGIES[self.strategy()])
        self.strategy_settings.setVisible(self.strategy() == "mean-teacher")

    def train(self, resume_from: Path | None = None) -> None:
        """Train a new student of the chosen teacher (the Train button)."""
        if resume_from is None and self.teacher() is None:
            show_error("No cell teacher: predict with the Teacher dock's cells task, or Load one.")
            return
        try:
            layers = self.inputs.read()
            train_config = self.settings.config()
            settings = self.strategy_form.config()
        except CellInputError as error:
            show_error(str(error))
            return
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        use_cpu_threads()
        self.session.start(
            build_student_run, self.strategy(), self.teacher(), layers.image, layers.planes,
            layers.nuclei, layers.rgb, train_config, settings, self.device_picker.device(),
            resume_from,
        )  # fmt: skip
        self._update_buttons()

    def resume(self) -> None:
        """Continue the stopped run, or the loaded student on the painted layers."""
        self.session.resume(lambda path: self.train(resume_from=path))
        self._update_buttons()

    def load_model(self) -> None:
        """Ask for a cell student checkpoint: predict with it, or Resume its training."""
        if not self.session.load(self):
            return
        extra = self.session.extra
        if extra.get("strategy") in STRATEGIES:
            self.strategy_box.setCurrentIndex(self.strategy_box.findData(extra["strategy"]))
        if extra.get("settings"):
            self.strategy_form.show_config(MeanTeacherConfig(**extra["settings"]))
        if extra.get("train_config"):
            self.settings.show_config(CellTrainConfig(**extra["train_config"]))
        self.model_box.describe(self.model_box.loaded_text())

    def _after_training(self) -> None:
        self.model_box.describe()
        self._update_buttons()

    def _update_buttons(self, *_: Any) -> None:
        if not hasattr(self, "model_box"):
            return
        busy = self.runner.is_running
        training = busy and self.panel.stop_button.isEnabled()
        self.panel.train_button.setEnabled(not busy)
        self.panel.resume_button.setEnabled(not busy and self.session.resumable)
        for part in (self.settings, self.strategy_form, self.strategy_box, self.teacher_box):
            part.setEnabled(not busy)
        self.inputs.setEnabled(not training)
        self.model_box.update_buttons(busy)
