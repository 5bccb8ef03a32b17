"""Slice tags for the ``mixed`` student: which classes a slice contains, entered in the dock.

A tag is the cheapest weak label: look at a slice, tick the classes it shows. *Tag this
slice...* takes the slice the viewer shows and offers the classes of the fully painted labels
(with their names when the layers carry ``metadata["class_names"]``), ticked as tagged before;
a slice tagged with no class says it holds background only. The table lists the tagged
slices (a double click shows one); *Load...* and *Save...* read and write the CSV of the
command line's ``--weak-labels`` (:func:`~napari_distill.core.io.read_tags_csv`), so a file
made here trains the same ``mixed`` run there, and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_distill._widgets.common.handoff import class_names_of
from napari_distill._widgets.common.slices import current_slice, go_to_slice
from napari_distill.core.io import ReadError, read_tags_csv, write_tags_csv
from napari_distill.core.preprocess import class_ids_from_labels

if TYPE_CHECKING:
    import napari

CSV_FILTER = "Slice tags CSV (*.csv)"
TABLE_ROWS_SHOWN = 4  # the table's height: the dock is short and holds much else


class SliceTagsError(ValueError):
    """The tags cannot be used with these labels; the message says what to do."""


class TagDialog(QDialog):
    """A checkable list of the classes: which ones slice ``index`` contains."""

    def __init__(
        self,
        index: int,
        classes: Mapping[int, str],
        checked: Sequence[int],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Tag slice {index}")
        self.list = QListWidget()
        for class_id, name in classes.items():
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, class_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            state = Qt.CheckState.Checked if class_id in checked else Qt.CheckState.Unchecked
            item.setCheckState(state)
            self.list.addItem(item)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        hint = QLabel(
            f"Which classes does slice {index} contain? Tick every class you see in it; the "
            "others count as absent (none ticked: background only)."
        )
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(hint)
        layout.addWidget(self.list)
        layout.addWidget(buttons)

    def item(self, class_id: int) -> QListWidgetItem:
        """The list's item of ``class_id``."""
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == class_id:
                return self.list.item(row)
        raise KeyError(class_id)

    def chosen(self) -> tuple[int, ...]:
        """The ticked class ids, ascending."""
        items = (self.list.item(row) for row in range(self.list.count()))
        return tuple(
            sorted(
                int(item.data(Qt.ItemDataRole.UserRole))
                for item in items
                if item.checkState() == Qt.CheckState.Checked
            )
        )


class SliceTagsPanel(QWidget):
    """The table of tagged slices with Tag / Remove / Load / Save.

    Parameters
    ----------
    viewer
        Where the current slice is read and a double-clicked slice is shown.
    full_layer, image_layer
        The chosen fully painted labels (their classes are the ones offered) and image.

    Signals
    -------
    changed
        The tags changed (the owner recounts the slices).
    """

    changed = Signal()

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        full_layer: Callable[[], Any],
        image_layer: Callable[[], Any],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self._full_layer = full_layer
        self._image_layer = image_layer
        self.tags: dict[int, tuple[int, ...]] = {}
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["slice", "classes present"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        row_height = self.table.verticalHeader().defaultSectionSize()
        self.table.setFixedHeight(
            self.table.horizontalHeader().sizeHint().height()
            + TABLE_ROWS_SHOWN * row_height
            + 2 * self.table.frameWidth()
        )
        self.table.setToolTip("The tagged slices; double-click a row to show its slice.")
        self.tag_button = QPushButton("Tag this slice...")
        self.tag_button.setToolTip(
            "Say which classes the slice shown contains (a cheap weak label: no painting)."
        )
        self.remove_button = QPushButton("Remove")
        self.remove_button.setToolTip("Forget the tags of the selected rows.")
        self.load_button = QPushButton("Load...")
        self.load_button.setToolTip(
            "Read tags from a CSV file 'slice,classes' (the command line's --weak-labels)."
        )
        self.save_button = QPushButton("Save...")
        self.save_button.setToolTip("Write the tags to a CSV file the command line reads.")
        buttons = QHBoxLayout()
        for button in (self.tag_button, self.remove_button, self.load_button, self.save_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Slice tags (classes a slice contains)"))
        layout.addWidget(self.table)
        layout.addLayout(buttons)

        self.tag_button.clicked.connect(self.tag_current_slice)
        self.remove_button.clicked.connect(self.remove_selected)
        self.load_button.clicked.connect(self.load)
        self.save_button.clicked.connect(self.save)
        self.table.cellDoubleClicked.connect(self._show_row)
        self._fill_table()

    # ------------------------------------------------------------------ classes
    def classes(self) -> dict[int, str]:
        """``{class id: "id name"}`` of the foreground classes painted in the full labels."""
        layer = self._full_layer()
        if layer is None:
            return {}
        names = self._names()  # the classes as the teacher finds them, on the painted slices
        ids = class_ids_from_labels(np.asarray(layer.data))[1:]
        return {c: names.get(c, f"class {c}") for c in ids}

    def _names(self) -> dict[int, str]:
        found = class_names_of(self._image_layer(), self._full_layer())
        return {c: f"{c} {name}" for c, name in found.items()}

    def refresh(self) -> None:
        """Show the class names of the layers chosen now."""
        self._fill_table(notify=False)

    def checked_tags(self) -> dict[int, tuple[int, ...]]:
        """The tags, checked against the full labels' classes and slices.

        Raises
        ------
        SliceTagsError
            A tag names a class the labels do not have, or a slice beyond the stack.
        """
        self._check(self.tags, "The slice tags")
        return dict(self.tags)

    def _check(self, tags: Mapping[int, Sequence[int]], what: str) -> None:
        layer = self._full_layer()
        if layer is None:
            raise SliceTagsError("Choose the fully painted labels first: tags name their classes.")
        known = self.classes()
        unknown = sorted({int(c) for classes in tags.values() for c in classes} - set(known))
        if unknown:
            listed = ", ".join(known.values()) or "none painted yet"
            raise SliceTagsError(
                f"{what} name class(es) {', '.join(map(str, unknown))}, which the labels "
                f"'{layer.name}' do not have (their classes: {listed}). Paint those classes on "
                "a slice first, or tag only the classes the labels know."
            )
        n_slices = 1 if layer.ndim < 3 else int(layer.data.shape[0])
        outside = sorted(i for i in tags if not 0 <= int(i) < n_slices)
        if outside:
            raise SliceTagsError(
                f"{what} name slice(s) {', '.join(map(str, outside))}, but '{layer.name}' has "
                f"{n_slices} slice(s) (0 to {n_slices - 1})."
            )

    # ------------------------------------------------------------------ actions
    def tag_current_slice(self) -> None:
        """Ask which classes the slice shown contains, and keep the answer as its tag."""
        layer = self._full_layer()
        classes = self.classes()
        if layer is None or not classes:
            show_error(
                "Paint the full labels first (and choose them above): the tags offer their classes."
            )
            return
        index = current_slice(self.viewer, layer)
        if index is None:
            show_error("The viewer shows no slice of the labels: move to one of their slices.")
            return
        dialog = TagDialog(index, classes, self.tags.get(index, ()), self)
        if dialog.exec_() != QDialog.DialogCode.Accepted:
            return
        self.tags[index] = dialog.chosen()
        self._fill_table(select=index)

    def remove_selected(self) -> None:
        """Forget the tags of the selected rows."""
        rows = {index.row() for index in self.table.selectedIndexes()}
        for row in rows:
            self.tags.pop(int(self.table.item(row, 0).text()), None)
        if rows:
            self._fill_table()

    def load(self) -> None:
        """Ask for a tags CSV and use its tags (after asking, when some are in the table)."""
        path, _ = QFileDialog.getOpenFileName(self, "Load slice tags", "", CSV_FILTER)
        if path:
            self.load_file(Path(path))

    def load_file(self, path: Path) -> bool:
        """Use the tags of ``path``; a bad file (or unknown classes) changes nothing."""
        try:
            loaded = read_tags_csv(path)
            self._check(loaded, f"The tags in {path.name}")
        except (ReadError, SliceTagsError) as error:
            show_error(f"Could not use the slice tags: {error} Nothing was loaded.")
            return False
        if self.tags and loaded != self.tags and not self._confirm_replace(path):
            return False
        self.tags = dict(loaded)
        self._fill_table()
        show_info(f"Loaded the tags of {len(loaded)} slice(s) from {path.name}.")
        return True

    def save(self) -> None:
        """Ask for a CSV file name and write the tags there."""
        if not self.tags:
            show_error("No slice is tagged yet: press 'Tag this slice...' first.")
            return
        chosen, _ = QFileDialog.getSaveFileName(self, "Save slice tags", "tags.csv", CSV_FILTER)
        if not chosen:
            return
        path = Path(chosen)
        if path.suffix.lower() != ".csv":
            path = path.with_name(path.name + ".csv")
            # the dialog asked about the name typed, not about this one
            if path.exists() and not self._confirm(f"{path.name} already exists. Replace it?"):
                return
        try:
            write_tags_csv(path, self.tags, overwrite=True)  # the dialog asked before replacing
        except (OSError, ValueError) as error:
            show_error(f"Could not save the slice tags: {error}")
            return
        show_info(f"Saved the tags of {len(self.tags)} slice(s) to {path}.")

    # ------------------------------------------------------------------ view
    def _confirm_replace(self, path: Path) -> bool:
        return self._confirm(
            f"Replace the tags of {len(self.tags)} slice(s) in the table by those of {path.name}?"
        )

    def _confirm(self, question: str) -> bool:
        answer = QMessageBox.question(self, "Slice tags", question)
        return answer == QMessageBox.StandardButton.Yes

    def _fill_table(self, select: int | None = None, notify: bool = True) -> None:
        names = self._names()
        self.table.setRowCount(len(self.tags))
        for row, index in enumerate(sorted(self.tags)):
            classes = self.tags[index]
            text = ", ".join(names.get(c, f"class {c}") for c in classes) or "background only"
            self.table.setItem(row, 0, QTableWidgetItem(str(index)))
            self.table.setItem(row, 1, QTableWidgetItem(text))
            if index == select:
                self.table.selectRow(row)
        self.remove_button.setEnabled(bool(self.tags))
        self.save_button.setEnabled(bool(self.tags))
        if notify:
            self.changed.emit()

    def _show_row(self, row: int, _column: int) -> None:
        layer = self._full_layer()
        if layer is not None:
            go_to_slice(self.viewer, layer, int(self.table.item(row, 0).text()))
