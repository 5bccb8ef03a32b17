"""A small matplotlib canvas for training curves, redrawn at a bounded rate.

Training yields a record per step (tens per second on a GPU). Redrawing a figure takes tens of
milliseconds on the GUI thread, so points are stored as they come and the figure is redrawn by
a timer at most ``max_redraws_per_s`` times a second: the viewer keeps painting.

Only the curves are redrawn during a run (blitted over a cached picture of the axes, about a
millisecond). The axes (ticks and their labels: about 25 ms of CPU, several times that on a
busy machine) are drawn again only when they change: the canvas has a fixed height, so status
lines that wrap differently never resize it, and a falling loss never rescales its axis (it
starts at 0; :func:`_fit`). When they do change (a run's first step fixes the step axis), they
are drawn in a background thread (:mod:`~napari_distill._widgets.common.plot_frame`), as are
those of a canvas shown or resized: no full draw runs on the GUI thread. Until the first point,
a one-line hint stands in place of the empty axes.

Example
-------
>>> plot = CurvePlot(y_label="loss", y2_label="validation Dice")  # doctest: +SKIP
>>> plot.append(step=1, y=0.9)                                      # doctest: +SKIP
>>> plot.append(step=25, y=0.4, y2=0.61)                            # doctest: +SKIP
"""

from __future__ import annotations

import functools

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

from napari_distill._widgets.common.plot_frame import FrameCanvas, FrameRenderer, FrameSpec
from napari_distill._widgets.common.plot_hint import HintedCanvas

# napari's dark theme (napari.utils.theme "dark"): the plot sits in a dark dock.
_BACKGROUND = "#262930"
_FOREGROUND = "#f0f1f2"
_GRID = "#4a4f5a"
_Y_COLOUR = "#5fa8f5"  # loss: blue
_Y2_COLOUR = "#f5a25f"  # validation score: orange
# The plot's height in pixels. Fixed: a resize costs a full draw, and during a run the dock's
# labels (status, model) change their line count and napari's status bar shows a progress bar.
PLOT_HEIGHT_PX = 200
# Ticks per axis: enough to read the curve; each tick label is a text to draw.
MAX_TICKS = 5
# Room left above the highest loss when the axis is fitted, so a loss that rises a little
# (warm-up, a hard batch) does not rescale the axis.
HEADROOM = 1.25


class CurvePlot(QWidget):
    """A curve against ``x_label`` on the left axis and, optionally, a second on the right.

    Parameters
    ----------
    x_label, y_label, y2_label:
        Axis labels; ``y2_label=None`` draws a single axis.
    y2_limits:
        Fixed range of the right axis (scores such as Dice live in [0, 1]); None autoscales.
    log_y:
        Draw the left axis on a log scale (losses often span decades).
    max_redraws_per_s:
        Upper bound on redraws; points arriving faster are drawn together. None: no timer
        of its own, the owner calls :meth:`flush` (to repaint together with its labels).
    hint:
        Shown instead of the empty axes until the first point (default: "The loss and the
        validation Dice appear here once training starts." from the labels).
    parent:
        The parent widget.
    """

    def __init__(
        self,
        x_label: str = "step",
        y_label: str = "loss",
        y2_label: str | None = "validation Dice",
        y2_limits: tuple[float, float] | None = (0.0, 1.0),
        log_y: bool = False,
        max_redraws_per_s: float | None = 5.0,
        hint: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        # No layout engine: a tight layout on every draw costs more than the draw itself; the
        # margins are fitted once per resize instead (resizeEvent).
        self.figure = Figure(figsize=(3.6, 2.4), dpi=100, facecolor=_BACKGROUND)
        self.canvas = FrameCanvas(self.figure, on_stale=self._axes_stale)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        # Fixed, and never squeezed by the dock's layout: a resize costs a full draw
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(PLOT_HEIGHT_PX)
        if hint is None:
            shown = y_label if y2_label is None else f"{y_label} and the {y2_label}"
            verb = "appears" if y2_label is None else "appear"
            hint = f"The {shown} {verb} here once training starts."
        self.view = HintedCanvas(self.canvas, hint)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)

        self._recipe = functools.partial(
            _build_axes, x_label=x_label, y_label=y_label, y2_label=y2_label,
            y2_limits=y2_limits, log_y=log_y,
        )  # fmt: skip
        self.axes, self.axes2 = self._recipe(self.figure)
        self.axes.set_xlim(0, 10)
        self._line = self.axes.lines[0]
        self._line2 = None if self.axes2 is None else self.axes2.lines[0]
        self._y2_limits = y2_limits
        self.x: list[float] = []
        self.y: list[float] = []
        self.x2: list[float] = []
        self.y2: list[float] = []
        self._dirty = False
        self.redraws = 0  # how many times the figure was drawn (tests check the throttle)
        self.full_draws = 0  # of which axes and all (the costly kind)
        self._timer = QTimer(self)
        if max_redraws_per_s is not None:
            self._timer.setInterval(max(1, int(1000 / max_redraws_per_s)))
            self._timer.timeout.connect(self.flush)
            self._timer.start()
        self._background = None  # the figure without the curves, for blitting
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self._frames = FrameRenderer(self._recipe, parent=self)
        self._frames.ready.connect(self._on_frame)
        self._frame_wanted: FrameSpec | None = None

    def append(self, step: float, y: float | None = None, y2: float | None = None) -> None:
        """Add a point to the left curve (``y``) and/or the right one (``y2``) at ``step``.

        Non-finite values are skipped (a diverging step must not break the axis limits).
        """
        if y is not None and y == y and abs(y) != float("inf"):
            self.x.append(float(step))
            self.y.append(float(y))
            self._dirty = True
        if y2 is not None and self._line2 is not None and y2 == y2:
            self.x2.append(float(step))
            self.y2.append(float(y2))
            self._dirty = True
        if self._dirty and not self.view.showing_canvas:
            self.view.show_canvas()  # the first point: the axes replace the hint

    def clear(self) -> None:
        """Remove every point; the axes keep their limits (the next run refits them only if
        its points need it, so clearing costs no full draw)."""
        for values in (self.x, self.y, self.x2, self.y2):
            values.clear()
        self.view.show_canvas(False)
        self.redraw()

    def set_x_range(self, high: float) -> None:
        """Fix the step axis to ``[0, high]`` (the planned steps), so it rarely rescales."""
        if high > 0 and self.axes.get_xlim()[1] != high:
            self.axes.set_xlim(0, high)
            self._background = None

    def redraw(self) -> None:
        """Draw now (at the end of a run, so the last points show without waiting).

        Only the curves are drawn (blitted over a cached background) unless the axes must
        rescale: a full matplotlib draw costs ~100 ms on a slow CPU, the curves a few ms.
        A hidden plot is drawn when shown (drawing a canvas that is being deleted fails).
        """
        if not self.isVisible():
            self._dirty = True
            return
        self._line.set_data(self.x, self.y)
        if self._line2 is not None:
            self._line2.set_data(self.x2, self.y2)
        self._dirty = False
        self.redraws += 1
        if self._rescale() or self._background is None:
            self._draw_axes()
            return
        self.canvas.restore_region(self._background)
        self._draw_curves()
        # The canvas paints from the Agg buffer just drawn into. update(), not blit(): blit
        # repaints at once, and in a window holding napari's OpenGL canvas every repaint
        # composes the whole window; update() joins the repaint of the labels changed with it.
        self.canvas.update()

    def _draw_axes(self) -> None:
        """Draw the axes again, in the background (a full draw on the GUI thread stalls the
        viewer for 25 ms to a few hundred on a busy machine)."""
        spec = FrameSpec.of(self.figure, self.axes, self.axes2)
        if spec != self._frame_wanted:
            self._frame_wanted = spec
            self._frames.request(spec)

    def _axes_stale(self) -> None:
        """The canvas was shown or resized: its axes are drawn anew (when the plot shows)."""
        self._background = None
        if self.isVisible():
            self._draw_axes()
        else:
            self._dirty = True  # drawn by showEvent

    def _on_frame(self, spec: FrameSpec, pixels) -> None:
        if spec == self._frame_wanted:
            self._frame_wanted = None
        if spec != FrameSpec.of(self.figure, self.axes, self.axes2):
            if self._frame_wanted is None:  # changed since (margins refitted): draw them now
                self._draw_axes()
            return
        renderer = self.canvas.get_renderer()  # the canvas's buffer, made anew after a resize
        if pixels.shape[:2] != (renderer.height, renderer.width):
            return
        np.asarray(renderer.buffer_rgba())[...] = pixels
        self.full_draws += 1
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._line.set_data(self.x, self.y)
        if self._line2 is not None:
            self._line2.set_data(self.x2, self.y2)
        self._draw_curves()
        self.canvas.update()

    def _on_draw(self, _event) -> None:
        self.full_draws += 1
        self._frame_wanted = None
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._draw_curves()

    def _draw_curves(self) -> None:
        self.axes.draw_artist(self._line)
        if self._line2 is not None and self.axes2 is not None:
            self.axes2.draw_artist(self._line2)

    def _rescale(self) -> bool:
        """Widen (or tighten, when far too loose) the limits to the data; True if changed."""
        changed = False
        all_x = self.x + self.x2
        if all_x and max(all_x) > self.axes.get_xlim()[1]:
            self.axes.set_xlim(0, max(10.0, 1.5 * max(all_x)))
            changed = True
        changed |= _fit(self.axes, self.y, self.axes.get_yscale() == "log")
        if self.axes2 is not None and self._y2_limits is None:
            changed |= _fit(self.axes2, self.y2, False)
        if changed:
            self._background = None
        return changed

    def flush(self) -> None:
        """Redraw if points came since the last draw and the plot is shown."""
        if self._dirty and self.isVisible():
            self.redraw()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)  # the canvas, hence the figure, already has its new size
        if self.canvas.width() > 50 and self.canvas.height() > 50:
            self.figure.tight_layout(pad=0.4)

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        # points that came while hidden (another dock tab in front) are drawn on show
        super().showEvent(event)
        if self._dirty:
            self.redraw()


def _style(axes: Axes) -> None:
    axes.set_facecolor(_BACKGROUND)
    axes.yaxis.set_major_locator(MaxNLocator(MAX_TICKS))
    axes.tick_params(colors=_FOREGROUND, labelsize=8)
    for spine in axes.spines.values():
        spine.set_color(_GRID)


def _build_axes(
    figure: Figure,
    x_label: str,
    y_label: str,
    y2_label: str | None,
    y2_limits: tuple[float, float] | None,
    log_y: bool,
) -> tuple[Axes, Axes | None]:
    """The plot's axes and (animated, so left out of full draws) curves on ``figure``: the
    plot's own figure, and the figures its frames are drawn on in the background."""
    axes = figure.add_subplot(1, 1, 1)
    _style(axes)
    axes.xaxis.set_major_locator(MaxNLocator(MAX_TICKS, integer=True))
    axes.set_xlabel(x_label, color=_FOREGROUND)
    axes.set_ylabel(y_label, color=_Y_COLOUR)
    axes.grid(True, color=_GRID, linewidth=0.5)
    if log_y:
        axes.set_yscale("log")
    axes.plot([], [], color=_Y_COLOUR, linewidth=1.0, label=y_label, animated=True)
    if y2_label is None:
        return axes, None
    axes2 = axes.twinx()
    _style(axes2)
    axes2.set_ylabel(y2_label, color=_Y2_COLOUR)
    if y2_limits is not None:
        axes2.set_ylim(*y2_limits)
    axes2.plot(
        [], [], color=_Y2_COLOUR, marker="o", markersize=3, linewidth=1.2, label=y2_label,
        animated=True,
    )  # fmt: skip
    return axes, axes2


def _fit(axes, values: list[float], log: bool) -> bool:
    """Set ``axes``' y limits around ``values`` when they leave them or fill under a quarter.

    Values that are all >= 0 on a linear axis (losses) get limits from 0 to :data:`HEADROOM`
    times their maximum, so a falling curve never leaves them; they change only for a new
    maximum above them, or when the maximum falls under a quarter of the range (a new run).
    """
    if not values:
        return False
    low, high = min(values), max(values)
    current_low, current_high = axes.get_ylim()
    if not log and low >= 0:
        high = max(high, 1e-6)
        if current_low == 0 and high <= current_high <= 4 * high:
            return False
        axes.set_ylim(0, high * HEADROOM)
        return True
    if log:
        low, high = max(low, 1e-12), max(high, 1e-12)
    span = max(high - low, 1e-6 * max(1.0, abs(high)))
    inside = current_low <= low and high <= current_high
    if inside and (current_high - current_low) <= 4 * span:
        return False
    if log:
        axes.set_ylim(low / 1.3, high * 1.3)
    else:
        axes.set_ylim(low - 0.15 * span, high + 0.15 * span)
    return True
