"""The per-cell table of a cell prediction: every cell with its field, plane, area and the
cells it overlaps; choosing a row shows that cell (its field, centred, its outline selected).

The rows are computed from the planes, so the table says what the outlines show: two cells
overlap when they share a pixel, which only cells in different planes can.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels

COLUMNS = ("Field", "Cell", "Plane", "Area (px)", "Overlaps with")
ROW_ROLE = Qt.ItemDataRole.UserRole  # an item's row in ``CellTable.rows`` (the table sorts)


@dataclass(frozen=True)
class CellRow:
    """One predicted cell: where it lies, its size and centre, the cells it overlaps."""

    field: int
    cell: int
    plane: int
    area: int
    centre: tuple[float, float]
    overlaps: tuple[int, ...]


def _overlap_pairs(field: np.ndarray) -> dict[int, set[int]]:
    """``{cell: cells sharing a pixel with it}`` for one field's planes ``(P, H, W)``."""
    partners: dict[int, set[int]] = {}
    for p in range(field.shape[0]):
        for q in range(p + 1, field.shape[0]):
            both = (field[p] > 0) & (field[q] > 0)
            if not both.any():
                continue
            pairs = np.unique(np.stack([field[p][both], field[q][both]]), axis=1)
            for a, b in pairs.T.tolist():
                partners.setdefault(a, set()).add(b)
                partners.setdefault(b, set()).add(a)
    return partners


def cell_rows(planes: np.ndarray) -> list[CellRow]:
    """A row per cell of ``planes`` ``(N, P, H, W)``, by field, then plane, then id."""
    rows = []
    for index, field in enumerate(planes):
        partners = _overlap_pairs(field)
        rr, cc = np.indices(field.shape[1:])
        for plane, labels in enumerate(field):
            flat = labels.ravel()
            areas = np.bincount(flat)
            ids = np.flatnonzero(areas)
            ids = ids[ids > 0]
            rows_sum = np.bincount(flat, rr.ravel())
            cols_sum = np.bincount(flat, cc.ravel())
            for cell in ids.tolist():
                area = int(areas[cell])
                centre = (rows_sum[cell] / area, cols_sum[cell] / area)
                rows.append(CellRow(index, cell, plane, area, centre,
                                    tuple(sorted(partners.get(cell, ())))))  # fmt: skip
    return rows


class CellTable(QTableWidget):
    """The rows of :func:`cell_rows`; a chosen row is shown in the viewer."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(0, len(COLUMNS))
        self.viewer = viewer
        self.rows: list[CellRow] = []
        self.plane_layers: list[Labels] = []
        self.one_field = False
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().hide()
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setMinimumHeight(160)
        self.setToolTip(
            "Every predicted cell: its field, the plane it lies in, its area and the cells it "
            "overlaps. Choose a row to show that cell: its field, centred, its outline selected."
        )
        self.itemSelectionChanged.connect(self._show_chosen)

    def show_cells(self, planes: np.ndarray, plane_layers: list[Labels], one_field: bool) -> None:
        """List the cells of ``planes`` ``(N, P, H, W)`` drawn by ``plane_layers``."""
        self.rows, self.plane_layers, self.one_field = cell_rows(planes), plane_layers, one_field
        self.setSortingEnabled(False)
        self.setRowCount(len(self.rows))
        for number, row in enumerate(self.rows):
            overlaps = ", ".join(str(c) for c in row.overlaps) or "-"
            values = (row.field, row.cell, row.plane + 1, row.area, overlaps)
            for column, value in enumerate(values):
                item = QTableWidgetItem()
                item.setData(ROW_ROLE, number)
                if isinstance(value, int):
                    item.setData(Qt.ItemDataRole.DisplayRole, value)  # sorts as a number
                else:
                    item.setText(value)
                self.setItem(number, column, item)
        self.setSortingEnabled(True)

    def row_of(self, table_row: int) -> CellRow:
        """The cell shown in ``table_row`` (sorted as the user sorted the table)."""
        return self.rows[int(self.item(table_row, 0).data(ROW_ROLE))]

    def _show_chosen(self) -> None:
        items = self.selectedItems()
        if not items:
            return
        row = self.rows[int(items[0].data(ROW_ROLE))]
        if row.plane >= len(self.plane_layers):
            return
        layer = self.plane_layers[row.plane]
        if layer not in self.viewer.layers:
            return
        position = row.centre if self.one_field else (row.field, *row.centre)
        world = layer.data_to_world(position)
        axis0 = self.viewer.dims.ndim - layer.ndim
        if not self.one_field:
            self.viewer.dims.set_point(axis0, float(world[0]))
        self.viewer.camera.center = tuple(float(v) for v in world[-2:])
        self.viewer.layers.selection.active = layer
        layer.selected_label = row.cell
