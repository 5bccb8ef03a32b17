"""A plot's canvas that shows a one-line hint in its place until there is something to plot.

Empty matplotlib axes (a loss axis from -0.04 to 0.04, a score axis with no slice) look broken
to someone who has not started anything yet; a sentence saying what will appear there, and
when, does not. The hint takes the canvas's place at the canvas's size, so the dock does not
jump when the first point arrives.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QStackedWidget, QWidget


class HintedCanvas(QStackedWidget):
    """``canvas``, or ``hint`` in its place while :meth:`show_canvas` has not been called.

    Parameters
    ----------
    canvas:
        The plot's canvas (a ``FigureCanvasQTAgg``).
    hint:
        What will appear there, and when (one sentence).
    parent:
        The parent widget.
    """

    def __init__(self, canvas: QWidget, hint: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.hint = QLabel(hint)
        self.hint.setWordWrap(True)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setMargin(12)
        self.addWidget(self.hint)
        self.addWidget(canvas)
        self.setCurrentWidget(self.hint)

    def show_canvas(self, shown: bool = True) -> None:
        """Show the canvas (there is something to plot), or the hint again (``False``)."""
        self.setCurrentWidget(self.canvas if shown else self.hint)

    @property
    def showing_canvas(self) -> bool:
        """Whether the canvas, not the hint, is in view."""
        return self.currentWidget() is self.canvas
