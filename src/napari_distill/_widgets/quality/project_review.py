"""The Quality review's *All images* tab: the (image, slice) pairs of every image a teacher
predicted, scored and ranked across images (issue 26).

The images are those of the teacher prediction chosen above and every other prediction of the
same teacher (:func:`~napari_distill._widgets.common.project_layers.teacher_project`), each
with the labels layer it was paired with in the Teacher widget. *Fit and score all images*
fits the quality classifier on the painted slices of all of them and scores every slice
(:func:`~napari_distill._widgets.quality.project_scoring.fit_and_score`, in a worker); the
table lists the pairs worst first across images
(:meth:`~napari_distill.core.quality.ProjectSelection.worst_first`). Choosing a row shows that
image (its image, labels and teacher layers visible, the other images' hidden: they share the
same space) on that slice. Each image's :class:`Selection` is published in its teacher
layer's hand-off dict, as the single-image review does, so the Student reads the decisions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from napari_distill._widgets.common.handoff import handoff, image_data
from napari_distill._widgets.common.project_layers import (
    ProjectLayers,
    ProjectWork,
    painted_count,
    teacher_project,
)
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill._widgets.quality.project_scoring import ImageToScore, Stage, fit_and_score
from napari_distill._widgets.quality.review_tab import RANK_CHOICES, SELECTION_KEY, go_to_slice
from napari_distill._widgets.quality.score_table import TINTS, slice_status, status_text
from napari_distill.core.config import QualityConfig
from napari_distill.core.preprocess import annotated_slices
from napari_distill.core.project import ProjectImage
from napari_distill.core.quality.project_selection import ProjectSelection

if TYPE_CHECKING:
    import napari

COLUMNS = ("image", "slice", "score", "confidence", "status")


def _number(value: float | None) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.3f}"


class ProjectReviewPanel(QWidget):
    """Score, rank and decide on the slices of every image of a teacher.

    Parameters
    ----------
    viewer:
        The viewer whose layers are shown and hidden.
    teacher_layer:
        The teacher prediction chosen in the widget (its teacher's predictions form the set).
    config:
        The quality classifier's settings at a tau (the Fit tab's form).
    device:
        The device chosen in the widget.
    on_fitted:
        Called with the classifier fitted here (the Fit tab shows and saves it).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        teacher_layer: Callable[[], Any],
        config: Callable[[float], QualityConfig],
        device: Callable[[], str],
        on_fitted: Callable[[Any], None],
    ) -> None:
        super().__init__()
        self.viewer = viewer
        self._teacher_layer, self._config, self._device = teacher_layer, config, device
        self._on_fitted = on_fitted
        self.runner = WorkerRunner(self, "Quality review of all images")
        self.work = ProjectWork("quality")
        work = self.work  # held by the slot: it outlives the Python wrapper
        self.destroyed.connect(lambda *_: work.clear())
        self.selection: ProjectSelection | None = None
        self.layers: dict[str, ProjectLayers] = {}  # the images reviewed, by name
        self.rows: list[tuple[str, int]] = []  # the table's (image, slice), in its order

        self.images_label = QLabel()
        self.images_label.setWordWrap(True)
        self.score_button = QPushButton("Fit and score all images")
        self.score_button.setToolTip(
            "Fit the quality classifier on the painted slices of every image of this teacher, "
            "then score every slice of every image."
        )
        self.bar = QProgressBar()
        self.stage = QLabel()
        self.tau_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.tau_slider.setRange(0.0, 1.0)
        self.tau_slider.setDecimals(2)
        self.tau_slider.setValue(QualityConfig().tau)
        self.rank_by = QComboBox()
        for text, key in RANK_CHOICES:
            self.rank_by.addItem(text, key)
        self.rank_by.setToolTip("What the table's order follows, worst first, across images.")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()  # the five columns fit the dock's width
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setToolTip("Choose a row to see that image on that slice.")
        self.counts = QLabel("Fit and score to review the slices of every image.")
        self.counts.setWordWrap(True)
        self.buttons = {
            name: QPushButton(text)
            for name, text in (("accept", "Accept (A)"), ("reject", "Reject (R)"),
                               ("reset", "Reset"), ("next", "Next worst (N)"))
        }  # fmt: skip
        self._build_layout()
        self.score_button.clicked.connect(self._score_clicked)
        self.tau_slider.valueChanged.connect(self.set_tau)
        self.rank_by.currentIndexChanged.connect(self._fill_table)
        self.table.currentCellChanged.connect(lambda row, *_: self.go_to_row(row))
        for name, action in (("accept", self.accept_row), ("reject", self.reject_row),
                             ("reset", self.reset_row), ("next", self.next_worst)):  # fmt: skip
            self.buttons[name].clicked.connect(action)
        for key, action in (("A", self.accept_row), ("R", self.reject_row), ("N", self.next_worst)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(action)
        self.refresh()

    def _build_layout(self) -> None:
        layout = QVBoxLayout(self)
        layout.addWidget(self.images_label)
        row = QHBoxLayout()
        row.addWidget(self.score_button)
        row.addWidget(self.bar, 1)
        layout.addLayout(row)
        layout.addWidget(self.stage)
        tau = QHBoxLayout()
        tau.addWidget(QLabel("Threshold τ"))
        tau.addWidget(self.tau_slider, 1)
        layout.addLayout(tau)
        rank = QHBoxLayout()
        rank.addWidget(QLabel("Rank by"))
        rank.addWidget(self.rank_by, 1)
        layout.addLayout(rank)
        layout.addWidget(self.table, 1)
        for names in (("accept", "reject", "reset"), ("next",)):
            buttons = QHBoxLayout()
            for name in names:
                buttons.addWidget(self.buttons[name])
            layout.addLayout(buttons)
        layout.addWidget(self.counts)

    # ------------------------------------------------------------------ the images
    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        self.refresh()  # predictions may have been added since
        super().showEvent(event)

    def refresh(self, *_: Any) -> None:
        """Find the images of the chosen teacher again (its predictions may have changed)."""
        found = teacher_project(self.viewer, self._teacher_layer())
        self.layers = {item.image.name: item for item in found}
        if not found:
            self.images_label.setText(
                "No teacher prediction chosen: predict several images with one teacher "
                "(Teacher widget, Several images), then score them all here."
            )
        else:
            parts = [
                f"'{name}' ({painted_count(item.labels)} painted)" if item.labels else f"'{name}'"
                for name, item in self.layers.items()
            ]
            self.images_label.setText(
                f"{len(found)} image(s) predicted by this teacher: {', '.join(parts)}."
            )
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.runner.is_running
        self.score_button.setText("Cancel" if busy else "Fit and score all images")
        self.score_button.setEnabled(busy or bool(self.layers))
        for button in self.buttons.values():
            button.setEnabled(not busy and self.selection is not None)

    # ------------------------------------------------------------------ scoring
    def _score_clicked(self) -> None:
        if self.runner.is_running:
            self.runner.stop()
        else:
            self.fit_and_score()

    def fit_and_score(self) -> None:
        """Fit on every image's painted slices, then score every slice (the button)."""
        self.refresh()
        items = list(self.layers.values())
        painted = [item for item in items if painted_count(item.labels) > 0]
        if not painted:
            show_error(
                "No image of this teacher has painted slices: the classifier learns from "
                "painted slices (their true quality is known). Paint a few, then score."
            )
            return
        try:
            config = self._config(self.tau_slider.value())
        except ValueError as error:
            show_error(f"Invalid setting: {error}")
            return
        to_fit = [
            ProjectImage(
                item.image.name, image_data(item.image), np.array(item.labels.data, copy=True),
                tuple(float(s) for s in item.image.scale), item.image.rgb,
            )
            for item in painted
        ]  # fmt: skip
        to_score = [
            ImageToScore(
                name, image_data(item.image), handoff(item.teacher)["probabilities"],
                tuple(int(i) for i in annotated_slices(self._labels_stack(item))),
                bool(item.image.rgb),
            )
            for name, item in self.layers.items()
        ]  # fmt: skip
        teacher = handoff(items[0].teacher)["bundle"]
        self.bar.setRange(0, 0)
        self.runner.start(
            fit_and_score, teacher, to_fit, to_score, self.work.new(), config=config,
            device=self._device(), on_yield=self._on_stage, on_return=self._on_scored,
            on_finish=self._on_finished, description="Scoring every image",
            error_message="Scoring the images failed",
        )  # fmt: skip
        self._update_buttons()

    @staticmethod
    def _labels_stack(item: ProjectLayers) -> np.ndarray:
        if item.labels is None:
            return np.zeros((1, 1, 1), np.uint8)
        data = np.asarray(item.labels.data)
        return data if data.ndim > 2 else data[np.newaxis]

    def _on_stage(self, stage: Stage) -> None:
        self.stage.setText(stage.text)
        self.bar.setRange(0, max(1, stage.total))
        self.bar.setValue(stage.done)

    def _on_scored(self, result: tuple[Any, ProjectSelection]) -> None:
        quality, selection = result
        self._on_fitted(quality)
        self.show_selection(selection)

    def _on_finished(self, outcome: str) -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if outcome == "returned" else 0)
        self.stage.setText({"aborted": "Stopped.", "errored": "Failed."}.get(outcome, ""))
        self._update_buttons()

    # ------------------------------------------------------------------ the selection
    def show_selection(self, selection: ProjectSelection) -> None:
        """Review ``selection`` and publish each image's part in its teacher layer."""
        self.selection = selection
        for name in selection.names:
            if name in self.layers:
                handoff(self.layers[name].teacher)[SELECTION_KEY] = selection[name]
        self._fill_table()
        self._update_buttons()
        if self.rows:  # the worst slice, shown (also when row 0 was current already)
            self.table.setCurrentCell(0, 0)
            self.go_to_row(0)

    def set_tau(self, tau: float) -> None:
        if self.selection is not None:
            self.selection.set_tau(float(tau))
            self._refresh_statuses()

    def ranking(self) -> str:
        return str(self.rank_by.currentData())

    def _fill_table(self, *_: Any) -> None:
        selection = self.selection
        self.rows = [] if selection is None else selection.worst_first(self.ranking())
        if selection is not None:  # then the painted slices, for completeness
            ranked = set(self.rows)
            self.rows += [pair for pair in selection.pairs() if pair not in ranked]
        self.table.blockSignals(True)
        self.table.setRowCount(len(self.rows))
        for row, (name, index) in enumerate(self.rows):
            chosen = selection[name]
            values = (name, str(index), _number(chosen.scores.get(index)),
                      _number(chosen.confidence.get(index)), "")  # fmt: skip
            for column, value in enumerate(values):
                self.table.setItem(row, column, QTableWidgetItem(value))
        self.table.blockSignals(False)
        self._refresh_statuses()

    def _refresh_statuses(self) -> None:
        selection = self.selection
        if selection is None:
            return
        status_column = COLUMNS.index("status")
        for row, (name, index) in enumerate(self.rows):
            chosen = selection[name]
            tint = TINTS.get(slice_status(chosen, index))
            for column in range(len(COLUMNS)):
                item = self.table.item(row, column)
                if column == status_column:
                    item.setText(status_text(chosen, index))
                item.setBackground(QBrush(tint) if tint is not None else QBrush())
        accepted = sum(len(s) for s in selection.accepted().values())
        annotated = sum(len(selection[n].annotated) for n in selection.names)
        self.counts.setText(
            f"{accepted} accepted and {annotated} annotated of {len(self.rows)} slices in "
            f"{len(selection.names)} images. The student learns from the accepted and the "
            "annotated slices of every image."
        )

    # ------------------------------------------------------------------ moving
    def go_to_row(self, row: int) -> None:
        if 0 <= row < len(self.rows):
            self.show_image(*self.rows[row])

    def show_image(self, name: str, index: int) -> None:
        """Show image ``name`` (hiding the other images of the set) on slice ``index``."""
        target = self.layers.get(name)
        if target is None or target.image not in self.viewer.layers:
            show_error(f"The image '{name}' is no longer in the viewer.")
            return
        for item in self.layers.values():
            for layer in (item.image, item.labels, item.teacher):
                if layer is not None and layer in self.viewer.layers:
                    layer.visible = item is target
        self.viewer.layers.selection.active = target.teacher
        go_to_slice(self.viewer, target.image, int(index))

    def _decide(self, decision: str) -> None:
        row = self.table.currentRow()
        if self.selection is None or not 0 <= row < len(self.rows):
            show_info("Fit and score, then choose a row to decide on its slice.")
            return
        name, index = self.rows[row]
        try:
            getattr(self.selection[name], decision)(index)
        except (KeyError, ValueError) as error:
            show_info(f"'{name}' slice {index}: {error}")
            return
        self._refresh_statuses()

    def accept_row(self) -> None:
        """Accept the chosen row's slice, whatever its score (A)."""
        self._decide("accept")

    def reject_row(self) -> None:
        """Reject the chosen row's slice, whatever its score (R)."""
        self._decide("reject")

    def reset_row(self) -> None:
        """Let the threshold decide the chosen row's slice again."""
        self._decide("reset")

    def next_worst(self) -> None:
        """Show the next row of the ranking (N)."""
        if self.rows:
            self.table.setCurrentCell(min(self.table.currentRow() + 1, len(self.rows) - 1), 0)
