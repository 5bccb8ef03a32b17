"""The axes of a curve plot (frame, ticks, labels: no curves) drawn off the GUI thread.

A full matplotlib draw of the training curve's figure costs about 25 ms of CPU, mostly its
text, and several times that in wall time on a busy machine (150-230 ms measured with 20
volumes open, as the canvas first showed at a run's first step): on the GUI thread, the viewer
stalls for it. Whenever the axes must be drawn (the canvas shown or resized, the axes' limits
changed), :class:`FrameRenderer` draws them on a figure of its own in a background thread; the
plot copies the pixels into its canvas and blits its curves on top, as after a draw of its own
(:meth:`~napari_distill._widgets.common.plot.CurvePlot.redraw`). :class:`FrameCanvas` is the
canvas that asks for such a frame where matplotlib would draw on the GUI thread.

Each render builds its own :class:`~matplotlib.figure.Figure` from the plot's recipe, so no
matplotlib object is shared between the threads. The drawing still takes Python's GIL, which
the GUI thread gets back at every switch interval (5 ms), instead of waiting for a whole draw.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QObject, QTimer, Signal

logger = logging.getLogger(__name__)

Limits = tuple[float, float]
# Builds the plot's axes on a new figure: (left axes, right axes or None).
AxesRecipe = Callable[[Figure], tuple[Axes, Axes | None]]


@dataclass(frozen=True)
class FrameSpec:
    """What the frame looks like: the figure's size and margins, and the axes' limits."""

    size_inches: tuple[float, float]
    dpi: float
    facecolor: tuple[float, ...]
    margins: tuple[float, float, float, float]  # subplot left, bottom, right, top
    xlim: Limits
    ylim: Limits
    y2lim: Limits | None

    @classmethod
    def of(cls, figure: Figure, axes: Axes, axes2: Axes | None) -> FrameSpec:
        params = figure.subplotpars
        width, height = figure.get_size_inches()
        return cls(
            size_inches=(float(width), float(height)),
            dpi=float(figure.dpi),
            facecolor=tuple(figure.get_facecolor()),
            margins=(params.left, params.bottom, params.right, params.top),
            xlim=tuple(axes.get_xlim()),
            ylim=tuple(axes.get_ylim()),
            y2lim=None if axes2 is None else tuple(axes2.get_ylim()),
        )


def render_frame(recipe: AxesRecipe, spec: FrameSpec) -> np.ndarray:
    """Draw the axes of ``spec`` (animated artists, the curves, are left out by matplotlib);
    return the ``(H, W, 4)`` RGBA pixels."""
    figure = Figure(figsize=spec.size_inches, dpi=spec.dpi, facecolor=spec.facecolor)
    axes, axes2 = recipe(figure)
    left, bottom, right, top = spec.margins
    figure.subplots_adjust(left=left, bottom=bottom, right=right, top=top)
    axes.set_xlim(*spec.xlim)
    axes.set_ylim(*spec.ylim)
    if axes2 is not None and spec.y2lim is not None:
        axes2.set_ylim(*spec.y2lim)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


class FrameRenderer(QObject):
    """Renders frames in a background thread, the latest request first; emits :attr:`ready`
    on the GUI thread (a queued signal) with the spec and its pixels.

    Requests made while one renders replace each other: only the newest is drawn next.
    """

    ready = Signal(object, object)  # FrameSpec, np.ndarray

    def __init__(self, recipe: AxesRecipe, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._recipe = recipe
        self._lock = threading.Lock()
        self._wanted: FrameSpec | None = None
        self._busy = False

    def request(self, spec: FrameSpec) -> None:
        """Draw ``spec`` soon (after the frame being drawn, if any)."""
        with self._lock:
            self._wanted = spec
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._run, name="napari-distill plot frame", daemon=True).start()

    def _run(self) -> None:
        while True:
            with self._lock:
                spec, self._wanted = self._wanted, None
                if spec is None:
                    self._busy = False
                    return
            try:
                pixels = render_frame(self._recipe, spec)
                self.ready.emit(spec, pixels)
            except RuntimeError:  # the plot was deleted meanwhile (its window closed)
                logger.debug("plot frame dropped: its plot is gone", exc_info=True)


class FrameCanvas(FigureCanvasQTAgg):
    """A Qt canvas whose idle draws go to ``on_stale`` instead of a draw on the GUI thread.

    matplotlib asks for an idle draw when the canvas is shown or resized
    (``resizeEvent`` calls ``draw_idle``), and its ``paintEvent`` then draws the whole figure on
    the GUI thread; here ``on_stale`` is called instead, once for a burst and after the events
    queued meanwhile (the plot refits its margins after the canvas's resize), and draws a frame
    in the background. ``draw()`` still draws here, when called on purpose.
    """

    def __init__(self, figure: Figure, on_stale: Callable[[], None]) -> None:
        super().__init__(figure)
        self._on_stale = on_stale
        self._stale = QTimer(self)  # a child: it goes with the canvas, never calling a dead one
        self._stale.setSingleShot(True)
        self._stale.setInterval(0)
        self._stale.timeout.connect(on_stale)

    def draw_idle(self) -> None:
        self._stale.start()
