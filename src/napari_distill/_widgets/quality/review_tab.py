"""The review half of the Quality widget: scores as a plot and a table, tau, accept and reject.

:class:`ReviewPanel` is a view over a :class:`~napari_distill.core.quality.Selection` (the
model) that belongs to one teacher prediction layer. It publishes the selection in that layer's
hand-off dict, ``layer.metadata["napari_distill"]["selection"]`` (:data:`SELECTION_KEY`),
and edits it in place: the threshold slider re-derives the automatic decisions; Accept (A),
Reject (R) and Reset act on the slice the viewer shows; Jump to worst and Next worst (N) walk
the slices from the lowest teacher confidence up (the default) or from the lowest quality
score up (*Rank by*, which also sorts the table). A click on a plot point or a table row shows
that slice.

Slices are indices along the layer's axis 0; the viewer is moved in world coordinates
(:func:`go_to_slice`), so the layer's scale and translate, and extra leading axes of other
layers (a 4D probability layer), are respected.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from napari_distill._widgets.common.handoff import handoff
from napari_distill._widgets.common.slices import current_slice, go_to_slice
from napari_distill._widgets.quality.score_plot import ScorePlot
from napari_distill._widgets.quality.score_table import (
    ACCEPTED,
    COLUMNS,
    REJECTED,
    ScoreTable,
    slice_status,
)
from napari_distill.core.quality import Selection, SelectionFileError

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels, Layer

SELECTION_KEY = "selection"
SELECTION_FILTER = "CSV (*.csv);;JSON (*.json)"
# What Jump to worst / Next worst walk by: (shown text, Selection.worst_first's ``by``). The
# teacher's confidence comes first: the classifier learns from annotated slices, which always
# hold labels, so it scores rightly empty pseudo-labels near 0 and would walk them first
# (docs/benchmarks.md, "Quality scores on the real pseudo-labels").
RANK_CHOICES = (("teacher confidence", "confidence"), ("quality score", "score"))


def published_selection(layer: Layer | None) -> Selection | None:
    """The selection published in ``layer``'s hand-off dict, or None."""
    value = (handoff(layer) or {}).get(SELECTION_KEY) if layer is not None else None
    return value if isinstance(value, Selection) else None


class ReviewPanel(QWidget):
    """Plot, table, threshold and decisions for the selection of one teacher prediction layer.

    Parameters
    ----------
    viewer:
        The viewer to move between slices.
    tau:
        The threshold shown before a selection exists.
    """

    def __init__(self, viewer: napari.viewer.Viewer, tau: float, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.selection: Selection | None = None
        self.layer: Labels | None = None  # the teacher prediction the selection belongs to
        self.tau_slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.tau_slider.setRange(0.0, 1.0)
        self.tau_slider.setDecimals(2)
        self.tau_slider.setValue(tau)
        self.tau_slider.setToolTip(
            "Slices whose predicted IoU is at least tau are accepted automatically; your own "
            "decisions (Accept / Reject) stay."
        )
        self.plot = ScorePlot(tau=tau)
        self.table = ScoreTable()
        self.rank_by = QComboBox()
        for text, key in RANK_CHOICES:
            self.rank_by.addItem(text, key)
        self.rank_by.setToolTip(
            "What Jump to worst, Next worst and the table's order follow: the teacher's own "
            "confidence in its pseudo-label (its mean top-class probability over what it "
            "labels foreground; needs no fitting), or the quality classifier's predicted IoU "
            "(which tau applies to; it has never seen a rightly empty slice, so it scores "
            "those near 0). Where the two disagree, look."
        )
        self.counts = QLabel("Score the slices to review them.")
        self.counts.setWordWrap(True)
        self.buttons: dict[str, QPushButton] = {}
        actions = (
            ("accept", "Accept (A)", self.accept_current,
             "Accept the slice shown, whatever its score."),
            ("reject", "Reject (R)", self.reject_current,
             "Reject the slice shown, whatever its score."),
            ("reset", "Reset", self.reset_current,
             "Back to the threshold's decision for the slice shown."),
            ("worst", "Jump to worst", self.jump_to_worst,
             "Go to the slice ranked worst (Rank by: score or teacher confidence)."),
            ("next", "Next worst (N)", self.next_worst,
             "Go to the next slice in that ranking, worst first."),
            ("save", "Save selection...", self.save_selection,
             "Save scores and decisions (CSV or JSON)."),
            ("load", "Load selection...", self.load_selection,
             "Review a selection saved earlier for this teacher prediction."),
        )  # fmt: skip
        for name, text, action, tooltip in actions:
            self.buttons[name] = button = QPushButton(text)
            button.setToolTip(tooltip)
            button.clicked.connect(action)
        # Keys work while the focus is in this panel (after a click on a row or the plot);
        # napari's own keys on the canvas stay untouched.
        self.shortcuts = {
            key: self._shortcut(key, action)
            for key, action in (("A", self.accept_current), ("R", self.reject_current),
                                ("N", self.next_worst))
        }  # fmt: skip
        self._build_layout()
        self.tau_slider.valueChanged.connect(self.set_tau)
        self.rank_by.currentIndexChanged.connect(self._sort_table)
        self._sort_table()
        self.plot.slice_clicked.connect(self.go_to)
        self.table.slice_activated.connect(self.go_to)
        viewer.dims.events.current_step.connect(self._on_step)
        self._selection_changed()

    def _shortcut(self, key: str, action: Callable[[], None]) -> QShortcut:
        shortcut = QShortcut(QKeySequence(key), self)
        shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        shortcut.activated.connect(action)
        return shortcut

    def _build_layout(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        tau_row = QHBoxLayout()
        tau_row.addWidget(QLabel("Threshold τ"))
        tau_row.addWidget(self.tau_slider, 1)
        layout.addLayout(tau_row)
        layout.addWidget(self.plot, 3)
        layout.addWidget(self.table, 2)
        for names in (("accept", "reject", "reset"), ("worst", "next"), ("save", "load")):
            row = QHBoxLayout()
            if "worst" in names:
                row.addWidget(QLabel("Rank by"))
                row.addWidget(self.rank_by)
            for name in names:
                row.addWidget(self.buttons[name])
            layout.addLayout(row)
        layout.addWidget(self.counts)

    def detach(self) -> None:
        """Stop following the viewer (the owning widget closes)."""
        self.viewer.dims.events.current_step.disconnect(self._on_step)

    # ------------------------------------------------------------------ the selection
    def set_layer(self, layer: Labels | None) -> None:
        """Review the teacher prediction ``layer``: its published selection, or nothing yet."""
        if layer is not self.layer:
            self.show_selection(layer, published_selection(layer))

    def show_selection(self, layer: Labels | None, selection: Selection | None) -> None:
        """Review ``selection`` of the teacher prediction ``layer`` and publish it there."""
        self.selection, self.layer = selection, layer
        if selection is not None and layer is not None:
            handoff(layer)[SELECTION_KEY] = selection
            self.tau_slider.blockSignals(True)
            self.tau_slider.setValue(selection.tau)
            self.tau_slider.blockSignals(False)
            self.plot.set_tau(selection.tau)
        self.plot.set_selection(selection)
        self.table.set_selection(selection)
        self._on_step()
        self._selection_changed()

    def _selection_changed(self) -> None:
        selection = self.selection
        for name, button in self.buttons.items():
            button.setEnabled(name == "load" and self.layer is not None or selection is not None)
        if selection is None:
            self.counts.setText("Score the slices to review them.")
            return
        self.plot.refresh_statuses()
        self.table.refresh_statuses()
        statuses = [slice_status(selection, i) for i in selection.scores]
        self.counts.setText(
            f"{statuses.count(ACCEPTED)} accepted, {statuses.count(REJECTED)} rejected, "
            f"{len(selection.annotated)} annotated of {len(statuses)} slices "
            f"({len(selection.overrides)} decided by hand). The student learns from the "
            "accepted and the annotated slices."
        )

    def set_tau(self, tau: float) -> None:
        """Move the threshold: the automatic decisions follow, decisions by hand stay."""
        tau = min(1.0, max(0.0, float(tau)))
        self.plot.set_tau(tau)
        if self.selection is not None:
            self.selection.set_tau(tau)
            self._selection_changed()

    # ------------------------------------------------------------------ slices
    def current(self) -> int | None:
        """The slice the viewer shows, as an index of the reviewed layer (None: none)."""
        return None if self.layer is None else current_slice(self.viewer, self.layer)

    def go_to(self, index: int) -> None:
        """Show slice ``index`` of the reviewed layer."""
        if self.layer is not None:
            go_to_slice(self.viewer, self.layer, int(index))

    def _on_step(self, *_) -> None:
        index = self.current() if self.selection is not None else None
        self.plot.set_current(index)
        self.table.show_slice(index)

    def _decide(self, decision: str) -> None:
        index = self.current()
        if self.selection is None or index is None:
            show_info("Score the slices first, then go to a slice to decide on it.")
            return
        try:
            getattr(self.selection, decision)(index)
        except (KeyError, ValueError) as error:
            show_warning(f"Slice {index}: {error}")
            return
        self._selection_changed()

    def accept_current(self) -> None:
        """Accept the slice the viewer shows, whatever its score (A)."""
        self._decide("accept")

    def reject_current(self) -> None:
        """Reject the slice the viewer shows, whatever its score (R)."""
        self._decide("reject")

    def reset_current(self) -> None:
        """Let the threshold decide for the slice the viewer shows again."""
        self._decide("reset")

    def ranking(self) -> str:
        """What the walk ranks by: ``"score"`` or ``"confidence"`` (the *Rank by* box)."""
        return str(self.rank_by.currentData())

    def _sort_table(self, *_) -> None:
        self.table.sortByColumn(COLUMNS.index(self.ranking()), Qt.SortOrder.AscendingOrder)

    def worst_first(self) -> list[int]:
        """Unannotated slices from the lowest score (or confidence, per *Rank by*) up."""
        return [] if self.selection is None else self.selection.worst_first(self.ranking())

    def _walk_order(self) -> list[int]:
        order = self.worst_first()
        if not order and self.selection is not None and self.ranking() == "confidence":
            show_info(
                "This selection holds no teacher confidence (it was saved by an older version): "
                "score the slices again, or rank by the quality score."
            )
        return order

    def jump_to_worst(self) -> None:
        """Go to the slice ranked worst."""
        order = self._walk_order()
        if order:
            self.go_to(order[0])

    def next_worst(self) -> None:
        """Go to the next slice in the ranking (N); from a slice off it, to the worst."""
        order, index = self._walk_order(), self.current()
        if not order:
            return
        if index not in order:
            self.go_to(order[0])
        elif order.index(index) + 1 < len(order):
            self.go_to(order[order.index(index) + 1])
        else:
            show_info("This is the best-ranked slice: every slice has been passed.")

    # ------------------------------------------------------------------ files
    def save_selection(self) -> None:
        """Ask for a file and save the selection as CSV or JSON (by its extension)."""
        selection = self.selection
        if selection is None:
            show_error("There is no selection to save yet: score the slices first.")
            return
        path, chosen = QFileDialog.getSaveFileName(
            self, "Save selection", "selection.csv", SELECTION_FILTER
        )
        if not path:
            return
        target = Path(path)
        if target.suffix.lower() not in (".csv", ".json"):
            target = target.with_suffix(".json" if "json" in chosen.lower() else ".csv")
        try:
            if target.suffix.lower() == ".json":
                selection.save_json(target)
            else:
                selection.save_csv(target)
        except OSError as error:
            show_error(f"Could not save the selection to {target}: {error}")
            return
        show_info(f"Saved the selection to {target}")

    def load_selection(self) -> None:
        """Ask for a CSV or JSON selection and review it (it must fit the reviewed layer)."""
        layer = self.layer
        if layer is None:
            show_error("Choose the teacher prediction the selection belongs to first.")
            return
        path, _ = QFileDialog.getOpenFileName(self, "Load selection", "", SELECTION_FILTER)
        if not path:
            return
        # A CSV holds no tau: it takes the slider's; a JSON file brings its own.
        tau = None if Path(path).suffix.lower() == ".json" else self.tau_slider.value()
        try:
            selection = Selection.load(path, tau=tau)
        except (SelectionFileError, OSError) as error:
            show_error(f"Could not load the selection: {error}")
            return
        n_slices = 1 if layer.ndim < 3 else layer.data.shape[0]
        if set(selection.scores) != set(range(n_slices)):
            show_error(
                f"{Path(path).name} lists {len(selection.scores)} slice(s), but '{layer.name}' "
                f"has {n_slices}: load a selection saved for this stack."
            )
            return
        self.show_selection(layer, selection)
