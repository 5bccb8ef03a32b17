"""The *Task* row at the top of the Teacher and Student docks: semantic labels (a class per
pixel: the CT organs, a Pap smear's cytoplasm and nuclei) or overlapping cells (Pap smear
cells whole, as planes, with their nuclei; docs/cells.md).

:func:`add_task_switch` puts the row above a dock's existing controls and shows either them or
the cells task's own widget, so the dock itself needs no other change: its controls are moved
under the row as they are, not rebuilt.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QFormLayout, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from napari_distill._widgets.common.dock import PluginDock

SEMANTIC, CELLS = "semantic", "cells"
TASKS = {
    SEMANTIC: (
        "Semantic labels",
        "A class per pixel (organs of a CT stack, cytoplasm and nucleus of a Pap smear), "
        "learnt from a few painted slices.",
    ),
    CELLS: (
        "Overlapping cells",
        "Pap smear cells each kept whole, overlaps included: paint cells as planes (a Labels "
        "layer with a plane axis) and nuclei on a few fields; the rest is predicted as cell "
        "planes and nuclei.",
    ),
}


class TaskSwitch(QWidget):
    """The task combo box above a dock's two sets of controls; shows one set at a time.

    Signals
    -------
    changed(str):
        The task shown now (``"semantic"`` or ``"cells"``).
    """

    changed = Signal(str)

    def __init__(self, semantic: QWidget, cells: QWidget, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.semantic, self.cells = semantic, cells
        self.combo = QComboBox()
        for key, (title, tip) in TASKS.items():
            self.combo.addItem(title, key)
            self.combo.setItemData(self.combo.count() - 1, tip, Qt.ItemDataRole.ToolTipRole)
        self.combo.setToolTip(
            "What to segment. " + " ".join(f"{t}: {tip}" for t, tip in TASKS.values())
        )
        row = QFormLayout()
        row.addRow("Task", self.combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(semantic)
        layout.addWidget(cells)
        self.combo.currentIndexChanged.connect(self._show)
        self._show()

    def task(self) -> str:
        """``"semantic"`` or ``"cells"``."""
        return str(self.combo.currentData())

    def set_task(self, task: str) -> None:
        """Show ``task`` (as if chosen in the combo box)."""
        self.combo.setCurrentIndex(self.combo.findData(task))

    def _show(self, *_: object) -> None:
        cells = self.task() == CELLS
        self.semantic.setVisible(not cells)
        self.cells.setVisible(cells)
        self.changed.emit(self.task())


def add_task_switch(dock: PluginDock, cells: QWidget) -> TaskSwitch:
    """Put a :class:`TaskSwitch` above ``dock``'s controls (``dock.content``), with ``cells``
    the overlapping-cells task's widget; returns the switch, which becomes ``dock.content``
    (the scrolled widget holding every control; the semantic controls are ``switch.semantic``)."""
    area = dock.scroll_area
    semantic = area.takeWidget()
    switch = TaskSwitch(semantic, cells)
    area.setWidget(switch)
    switch.installEventFilter(area)  # the dock follows the shown controls' size
    dock.content = switch
    return switch
