"""A table of per-slice quality scores (slice, score, teacher confidence, status), sortable by
clicking a header.

A view over a :class:`~napari_distill.core.quality.Selection`: the model reads the selection
each time Qt asks, so after the selection changed (a new ``tau``, an accept or a reject) the
owner calls :meth:`ScoreTable.refresh_statuses`. Rejected rows are tinted red, annotated rows
blue; a decision made by hand says so in the status column. Choosing a row (click or arrow
keys) emits :attr:`ScoreTable.slice_activated` with the slice index.
"""

from __future__ import annotations

import math
from typing import Any

from qtpy.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QSortFilterProxyModel,
    Qt,
    Signal,
)
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from napari_distill.core.quality import Selection

COLUMNS = ("slice", "score", "confidence", "status")
SORT_ROLE = Qt.ItemDataRole.UserRole  # numbers to sort by (the display text sorts as text)

ACCEPTED, REJECTED, ANNOTATED, NOT_SCORED = "accepted", "rejected", "annotated", "not scored"
# Row tints: visible on napari's dark and light themes.
TINTS = {
    REJECTED: QColor(239, 83, 80, 90),
    ANNOTATED: QColor(95, 168, 245, 70),
}


def slice_status(selection: Selection, index: int) -> str:
    """``"annotated"``, ``"accepted"``, ``"rejected"`` or ``"not scored"`` for slice ``index``."""
    if index in selection.annotated:
        return ANNOTATED
    if index in selection.accepted:
        return ACCEPTED
    if math.isnan(selection.scores.get(index, math.nan)):
        return NOT_SCORED
    return REJECTED


def status_text(selection: Selection, index: int) -> str:
    """The status with ``" (by hand)"`` when the user overrode the threshold's decision."""
    status = slice_status(selection, index)
    return f"{status} (by hand)" if index in selection.overrides else status


class ScoreTableModel(QAbstractTableModel):
    """Rows are the selection's slices in ascending order; see :data:`COLUMNS`."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.selection: Selection | None = None
        self.slices: list[int] = []

    def set_selection(self, selection: Selection | None) -> None:
        """Show ``selection`` (None empties the table)."""
        self.beginResetModel()
        self.selection = selection
        self.slices = [] if selection is None else sorted(selection.scores)
        self.endResetModel()

    def refresh_statuses(self) -> None:
        """Tell the views that statuses (and row tints) may have changed."""
        if self.slices:
            last = self.index(len(self.slices) - 1, len(COLUMNS) - 1)
            self.dataChanged.emit(self.index(0, 0), last)

    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self.slices)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex, role=Qt.ItemDataRole.DisplayRole) -> Any:
        selection = self.selection
        if selection is None or not index.isValid():
            return None
        slice_index = self.slices[index.row()]
        column = COLUMNS[index.column()]
        value = {
            "score": selection.scores[slice_index],
            "confidence": selection.confidence.get(slice_index, math.nan),
        }.get(column)
        if role == Qt.ItemDataRole.DisplayRole:
            if column == "slice":
                return str(slice_index)
            if value is not None:
                return "" if math.isnan(value) else f"{value:.3f}"
            return status_text(selection, slice_index)
        if role == SORT_ROLE:
            if column == "slice":
                return slice_index
            if value is not None:  # slices without a value last in ascending order
                return math.inf if math.isnan(value) else value
            return status_text(selection, slice_index)
        if role == Qt.ItemDataRole.BackgroundRole:
            tint = TINTS.get(slice_status(selection, slice_index))
            return None if tint is None else QBrush(tint)
        if role == Qt.ItemDataRole.TextAlignmentRole and column != "status":
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class ScoreTable(QTableView):
    """The score table, sorted by score (worst first) until told otherwise or a header is
    clicked.

    Signals
    -------
    slice_activated(int):
        The user chose the row of this slice (click or keyboard).
    """

    slice_activated = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table_model = ScoreTableModel(self)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.table_model)
        self.proxy.setSortRole(SORT_ROLE)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(COLUMNS.index("score"), Qt.SortOrder.AscendingOrder)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(20)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.setMinimumHeight(140)
        self.setToolTip(
            "Every slice's predicted IoU (score) and the teacher's own confidence in its "
            "pseudo-label. Click a row to go to the slice; click a header to sort."
        )
        self._syncing = False  # True while the owner selects a row: no slice_activated then
        self.selectionModel().currentRowChanged.connect(self._row_changed)
        # a click on the row already current (the viewer moved away since) must still go there
        self.clicked.connect(lambda index: self._row_changed(index, index))

    def set_selection(self, selection: Selection | None) -> None:
        """Show ``selection``'s slices (None empties the table)."""
        self.table_model.set_selection(selection)

    def refresh_statuses(self) -> None:
        """Redraw statuses and tints after the selection changed."""
        self.table_model.refresh_statuses()

    def row_of(self, slice_index: int) -> int | None:
        """The row (as shown, i.e. after sorting) of ``slice_index``, or None."""
        try:
            source_row = self.table_model.slices.index(int(slice_index))
        except ValueError:
            return None
        return self.proxy.mapFromSource(self.table_model.index(source_row, 0)).row()

    def slice_at(self, row: int) -> int:
        """The slice shown in ``row`` (as shown, i.e. after sorting)."""
        source = self.proxy.mapToSource(self.proxy.index(row, 0))
        return self.table_model.slices[source.row()]

    def show_slice(self, slice_index: int | None) -> None:
        """Select and scroll to ``slice_index``'s row without emitting :attr:`slice_activated`."""
        row = None if slice_index is None else self.row_of(slice_index)
        self._syncing = True
        try:
            if row is None:
                self.clearSelection()
                return
            index = self.proxy.index(row, 0)
            if self.currentIndex().row() != row:
                self.setCurrentIndex(index)
            self.selectRow(row)
            self.scrollTo(index)
        finally:
            self._syncing = False

    def _row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not self._syncing and current.isValid():
            self.slice_activated.emit(self.slice_at(current.row()))
