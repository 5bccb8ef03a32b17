"""Per-slice quality scores over the slice index, with the threshold tau drawn across.

A view over a :class:`~napari_distill.core.quality.Selection` (matplotlib in a Qt canvas):
accepted slices are green dots, rejected ones red crosses, annotated ones blue squares; a ring
marks a decision made by hand; small violet dots are the teacher's own confidence in each
unannotated slice's pseudo-label (when the selection has it); a dashed line is ``tau`` and a
vertical line the slice the viewer shows. Drawing goes through ``draw_idle``, so dragging the
threshold slider redraws at most once per event-loop pass. The slice line alone moves by
blitting over the last full draw's pixels: it follows the viewer's slider at every step, and a
full draw (60-120 ms on a busy 2-core machine) there would stall the scrolling. A left click emits
:attr:`ScorePlot.slice_clicked` with the nearest slice. Until a selection with scores is
shown, a one-line hint stands in place of the empty axes.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.backend_bases import MouseEvent
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from napari_distill._widgets.common.plot import _BACKGROUND, _FOREGROUND, _GRID
from napari_distill._widgets.common.plot_hint import HintedCanvas
from napari_distill._widgets.quality.score_table import ACCEPTED, ANNOTATED, REJECTED, slice_status
from napari_distill.core.quality import Selection

# (status, legend text, marker, colour): distinct in shape as well as colour.
MARKERS = (
    (ACCEPTED, "accepted", "o", "#66bb6a"),
    (REJECTED, "rejected", "x", "#ef5350"),
    (ANNOTATED, "annotated", "s", "#5fa8f5"),
)
_TAU_COLOUR = "#f5a25f"
_CURRENT_COLOUR = "#c0c4cc"
_PROFILE_COLOUR = "#6b7180"
_CONFIDENCE_COLOUR = "#b39ddb"


class ScorePlot(QWidget):
    """Scores against slice index; ``tau`` as a horizontal line; the current slice marked.

    Signals
    -------
    slice_clicked(int):
        The user clicked the plot; the slice nearest to the click.
    """

    slice_clicked = Signal(int)

    def __init__(self, tau: float = 0.7, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(
            figsize=(3.6, 2.6), dpi=100, facecolor=_BACKGROUND, layout="constrained"
        )
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.canvas.setMinimumHeight(200)
        self.canvas.setToolTip("Click a point to go to its slice.")
        self.view = HintedCanvas(
            self.canvas, "The score of every slice appears here once you press Score slices."
        )
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

        axes = self.axes = self.figure.add_subplot(1, 1, 1)
        axes.set_facecolor(_BACKGROUND)
        axes.tick_params(colors=_FOREGROUND, labelsize=8)
        for spine in axes.spines.values():
            spine.set_color(_GRID)
        axes.set_xlabel("slice", color=_FOREGROUND, fontsize=9)
        axes.set_ylabel("predicted IoU", color=_FOREGROUND, fontsize=9)
        axes.set_ylim(-0.03, 1.03)
        axes.grid(True, color=_GRID, linewidth=0.5)
        (self._profile,) = axes.plot([], [], color=_PROFILE_COLOUR, linewidth=0.8, zorder=1)
        self._points = {
            status: axes.plot(
                [], [], linestyle="none", marker=marker, markersize=4, color=colour,
                markeredgewidth=1.4 if marker == "x" else 0.5, label=text, zorder=3,
            )[0]
            for status, text, marker, colour in MARKERS
        }  # fmt: skip
        (self._confidence,) = axes.plot(
            [], [], linestyle="none", marker=".", markersize=5, color=_CONFIDENCE_COLOUR,
            label="teacher confidence", zorder=2,
        )  # fmt: skip
        (self._by_hand,) = axes.plot(
            [], [], linestyle="none", marker="o", markersize=9, markerfacecolor="none",
            markeredgecolor=_FOREGROUND, markeredgewidth=0.8, label="by hand", zorder=2,
        )  # fmt: skip
        self._tau_line = axes.axhline(
            tau, color=_TAU_COLOUR, linestyle="--", linewidth=1.2, label="τ", zorder=2
        )
        # animated: left out of full draws, blitted over their pixels (set_current)
        self._current_line = axes.axvline(
            0, color=_CURRENT_COLOUR, linewidth=1.0, alpha=0.8, zorder=0, animated=True
        )
        self._current_line.set_visible(False)
        self._background = None  # the pixels of the last full draw, without the slice line
        # above the axes, outside them: the constrained layout makes room, no point is hidden
        self.figure.legend(
            loc="outside upper center", ncol=3, fontsize=7, frameon=False,
            labelcolor=_FOREGROUND, handletextpad=0.3, columnspacing=0.8,
        )  # fmt: skip
        self.selection: Selection | None = None
        self.canvas.mpl_connect("button_press_event", self.on_press)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self.canvas.mpl_connect("resize_event", self._on_resize)
        self.canvas.draw_idle()

    # ------------------------------------------------------------------ content
    def set_selection(self, selection: Selection | None) -> None:
        """Plot ``selection`` (None clears the plot)."""
        self.selection = selection
        slices = [] if selection is None else sorted(selection.scores)
        scores = [selection.scores[i] for i in slices] if selection is not None else []
        self._profile.set_data(slices, scores)
        sure = [] if selection is None else sorted(selection.worst_first("confidence"))
        self._confidence.set_data(sure, [selection.confidence[i] for i in sure] if sure else [])
        if slices:
            self.axes.set_xlim(slices[0] - 0.5, slices[-1] + 0.5)
        self.view.show_canvas(bool(slices))  # no slice scored: the hint, not empty axes
        self.refresh_statuses()

    def refresh_statuses(self) -> None:
        """Redraw the markers and ``tau`` after the selection changed."""
        selection = self.selection
        groups: dict[str, list[int]] = {status: [] for status, *_ in MARKERS}
        if selection is not None:
            for index in sorted(selection.scores):
                status = slice_status(selection, index)
                if status in groups and not math.isnan(selection.scores[index]):
                    groups[status].append(index)
            self._tau_line.set_ydata([selection.tau, selection.tau])
        for status, indices in groups.items():
            self._points[status].set_data(indices, self._scores(indices))
        by_hand = [] if selection is None else sorted(selection.overrides)
        self._by_hand.set_data(by_hand, self._scores(by_hand))
        self.canvas.draw_idle()

    def set_tau(self, tau: float) -> None:
        """Move the threshold line."""
        self._tau_line.set_ydata([tau, tau])
        self.canvas.draw_idle()

    def set_current(self, index: int | None) -> None:
        """Mark the slice the viewer shows (None hides the mark): blitted, no full draw."""
        self._current_line.set_visible(index is not None)
        if index is not None:
            self._current_line.set_xdata([index, index])
        if self._background is None:  # nothing drawn yet: the next full draw shows it
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self._draw_current()
        self.canvas.blit(self.figure.bbox)

    def _on_draw(self, _event) -> None:
        """After a full draw: keep its pixels, then draw the slice line over them (the canvas
        paints the result itself)."""
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_current()

    def _on_resize(self, _event) -> None:
        self._background = None  # another size: the next full draw keeps new pixels

    def _draw_current(self) -> None:
        if self._current_line.get_visible():
            self.axes.draw_artist(self._current_line)

    @property
    def tau(self) -> float:
        """Where the threshold line is drawn."""
        return float(self._tau_line.get_ydata()[0])

    def points(self, status: str) -> tuple[np.ndarray, np.ndarray]:
        """The ``(slices, scores)`` drawn for ``status`` (``"accepted"``, ...)."""
        line = self._points[status]
        return np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)

    def _scores(self, indices: list[int]) -> list[float]:
        selection = self.selection
        return [] if selection is None else [selection.scores[i] for i in indices]

    # ------------------------------------------------------------------ clicks
    def on_press(self, event: MouseEvent) -> None:
        """A mouse press on the canvas: a left click in the axes emits the nearest slice."""
        selection = self.selection
        if (
            selection is None
            or not selection.scores
            or event.inaxes is not self.axes
            or event.xdata is None
            or event.button != 1
        ):
            return
        slices = np.array(sorted(selection.scores))
        nearest = int(slices[np.argmin(np.abs(slices - event.xdata))])
        self.slice_clicked.emit(nearest)
