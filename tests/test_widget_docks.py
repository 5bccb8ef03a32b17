"""The three docks on a laptop screen (issue 30): opened as the Plugins menu opens them, each
gets a usable height in a 1366 x 768 window, and the window does not grow past it."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, QRect, Qt
from qtpy.QtWidgets import QScrollArea

from napari_distill._widgets.common.dock import MIN_HEIGHT

PLUGIN = "napari-distill"
DOCKS = ("Teacher", "Quality review", "Student (distillation)")  # napari.yaml display names
SCREEN = QRect(0, 0, 1366, 768)
USABLE_HEIGHT = 250  # px: a few rows of settings and the Train button


def visible_height(window, dock) -> int:
    """Height of ``dock`` inside the screen's rectangle (window coordinates); 0 when hidden
    (a tab behind another is not hidden but moved out of the window: nothing of it shows)."""
    if not dock.isVisible() or dock.visibleRegion().isEmpty():
        return 0
    top_left = dock.mapTo(window, QPoint(0, 0))
    return QRect(top_left, dock.size()).intersected(SCREEN).height()


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(SCREEN.width(), SCREEN.height())
    qtbot.wait(50)
    return viewer


def open_docks(viewer, qtbot) -> tuple:
    """The main window and ``(dock, widget)`` of each widget, opened in the menu's order.

    ``add_plugin_dock_widget`` calls ``add_dock_widget`` without ``tabify``, in the right dock
    area, as the Plugins menu's action does. (Returned, not kept by a fixture: napari's viewer
    fixture fails a test that outlives a reference to its window.)
    """
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in DOCKS]
    qtbot.wait(100)
    return viewer.window._qt_window, docks


def test_three_docks_fit_a_laptop_screen(qtbot, viewer):
    window, docks = open_docks(viewer, qtbot)
    assert window.frameGeometry().height() <= SCREEN.height()
    for dock, _widget in docks:
        dock.raise_()  # what a click on its tab does (a no-op for a dock that is not a tab)
        qtbot.wait(50)
        assert visible_height(window, dock) >= USABLE_HEIGHT, dock.name
        assert window.frameGeometry().height() <= SCREEN.height(), dock.name


def test_the_last_dock_opened_is_in_front_and_the_others_are_its_tabs(qtbot, viewer):
    window, docks = open_docks(viewer, qtbot)
    teacher, quality, student = (dock for dock, _ in docks)
    assert set(window.tabifiedDockWidgets(student)) == {teacher, quality}
    assert visible_height(window, student) > 0
    assert visible_height(window, teacher) == visible_height(window, quality) == 0


def test_every_dock_scrolls_when_it_is_short(qtbot, viewer):
    _window, docks = open_docks(viewer, qtbot)
    for dock, widget in docks:
        dock.raise_()
        qtbot.wait(20)
        scroll = widget.findChild(QScrollArea)
        assert scroll is not None and scroll.widget() is widget.content, dock.name
        # the dock may be shorter than its controls: they scroll instead of growing the window
        assert widget.minimumSizeHint().height() < widget.content.sizeHint().height(), dock.name


def test_docks_dragged_apart_still_fit_and_scroll(qtbot, viewer):
    window, docks = open_docks(viewer, qtbot)
    for dock, _widget in docks:  # as a user drags each tab out, below the others
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock, Qt.Orientation.Vertical)
    qtbot.wait(100)
    assert not any(window.tabifiedDockWidgets(dock) for dock, _ in docks)
    assert window.frameGeometry().height() <= SCREEN.height()
    for dock, widget in docks:
        assert visible_height(window, dock) >= MIN_HEIGHT, dock.name
        assert widget.scroll_area.verticalScrollBar().maximum() > 0, dock.name  # it scrolls


def test_the_plugins_menu_itself_opens_them_as_tabs(qtbot, viewer):
    # the user's path: Plugins > napari-distill > each widget, one click after the other
    menu = viewer.window.plugins_menu
    ours = next(action.menu() for action in menu.actions() if action.text() == PLUGIN)
    actions = {action.text(): action for action in ours.actions()}
    for name in DOCKS:
        actions[name].trigger()
        qtbot.wait(50)
    window = viewer.window._qt_window
    docks = [viewer.window.dock_widgets[f"{name} ({PLUGIN})"].parent() for name in DOCKS]
    assert len(window.tabifiedDockWidgets(docks[-1])) == 2
    assert window.frameGeometry().height() <= SCREEN.height()
    for dock in docks:
        dock.raise_()
        qtbot.wait(20)
        assert visible_height(window, dock) >= USABLE_HEIGHT, dock.name
