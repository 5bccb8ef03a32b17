"""The shell of every dock widget: its controls scroll, and the plugin's docks open as tabs.

napari 0.9's *Plugins* menu adds a dock with ``window.add_dock_widget(widget, name=...)``:
without ``tabify``, docks in the same area are stacked and share its height, and a stack whose
minimum heights add up to more than the screen grows the window past it (napari issue #5247).
With the Teacher, Quality review and Student docks open on a 1366 x 768 screen the window
grew to 1740 px and the Student dock got 69 px. So:

- :class:`PluginDock` puts the widget's controls (``self.content``) in a scroll area whose
  minimum height is :data:`MIN_HEIGHT`: a short dock scrolls instead of growing the window;
- when napari first places a dock in the window, it joins another of the plugin's docks in
  the same dock area as a tab (``QMainWindow.tabifyDockWidget``), in front, so each gets the
  area's whole height. The user can still drag a tab out to stack or float it; docks of other
  plugins and docks the user moved elsewhere are left alone.

The dock is found through the Qt parents, as napari's ``Window.dock_widgets`` documents it
(``qt_widget.parent()`` is the dock, whose parent is the main window); only public Qt calls
are used, so a napari that tabifies plugin docks itself finds them tabbed already.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import (
    QDockWidget,
    QFrame,
    QMainWindow,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

# The smallest height a dock's controls are squeezed to before they scroll: a few rows of
# settings and their buttons. Three stacked docks still fit a 768-pixel screen.
MIN_HEIGHT = 200


class _VerticalScrollArea(QScrollArea):
    """Scrolls up and down only; as wide as its content needs, so no row is ever clipped."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(content)
        # A scroll area does not follow its content's size by itself: a row that widens (a long
        # layer name, *Advanced* opened) must widen the dock too.
        content.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)

    def _with_scroll_bar(self, content: QSize) -> QSize:
        return QSize(
            content.width() + self.verticalScrollBar().sizeHint().width(), content.height()
        )

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        content = self.widget()
        return super().sizeHint() if content is None else self._with_scroll_bar(content.sizeHint())

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        content = self.widget()
        if content is None:
            return super().minimumSizeHint()
        width = self._with_scroll_bar(content.minimumSizeHint()).width()
        return QSize(width, min(MIN_HEIGHT, content.minimumSizeHint().height()))


def _hidden_by_user(dock: QDockWidget) -> bool:
    """Hidden on purpose (its title bar's hide button, or the Plugins menu's toggle), not merely
    not shown yet: a dock added in the same call as this one is shown by the event loop later.
    (A tab behind another is neither: Qt moves it out of sight without hiding it.)"""
    return dock.isHidden() and dock.testAttribute(Qt.WidgetAttribute.WA_WState_ExplicitShowHide)


class PluginDock(QWidget):
    """Base of the plugin's dock widgets: lay out the controls on :attr:`content`.

    Attributes
    ----------
    content:
        The widget holding every control; it scrolls when the dock is shorter than it.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.content = QWidget()
        self.scroll_area = _VerticalScrollArea(self.content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll_area)
        self._placed = False

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange and not self._placed:
            dock = self.parentWidget()
            if isinstance(dock, QDockWidget):
                # napari wraps the widget in its dock first, then adds the dock to the window
                dock.dockLocationChanged.connect(self._first_docked)
        return super().event(event)

    def _first_docked(self, _area: Qt.DockWidgetArea) -> None:
        # emitted by QMainWindow.addDockWidget once the dock is in its area (and again on
        # every later move: only the first placement is the plugin's to choose)
        if self._placed:
            return
        self._placed = True
        self.join_plugin_docks()

    def join_plugin_docks(self) -> bool:
        """Become a tab of another of the plugin's docks in the same area; True if it did."""
        dock = self.parentWidget()
        window = dock.parentWidget() if isinstance(dock, QDockWidget) else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return False
        if window.tabifiedDockWidgets(dock):
            return False  # already a tab (napari's own tabify, or the user's)
        area = window.dockWidgetArea(dock)
        for other in window.findChildren(QDockWidget):
            if (
                other is not dock
                and isinstance(other.widget(), PluginDock)
                and not _hidden_by_user(other)
                and not other.isFloating()
                and window.dockWidgetArea(other) == area
            ):
                window.tabifyDockWidget(other, dock)
                dock.show()
                dock.raise_()  # the dock just opened is the one the user wants to see
                return True
        return False
