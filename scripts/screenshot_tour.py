"""Screenshots of the whole loop, as a user drives it: Teacher, Quality review, Student, export.

Needs a display with OpenGL; headless, run it under Xvfb from the repository root, on a laptop's
screen size:

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_tour.py

For each sample (the plugin's Medaka CT and Pap smear sample data), in a 1366 x 768 window, it
opens the three widgets one after the other as the Plugins menu does (``add_plugin_dock_widget``;
they join each other as tabs), and with their *default* settings: trains a teacher and predicts;
fits the quality
classifier and scores every slice, then overrules two slices by hand; trains the student and
predicts (Pap smear: nuclei split into instances; Medaka: the compact organs kept to one
piece); exports the student's labels through the widget's Export button and reads them back.
After each step it writes the window and the whole dock (its controls, scrolled or not):

- ``widget_teacher.png`` / ``widget_teacher_dock.png`` (Medaka), ``widget_teacher_pap.png``;
- ``widget_quality_fit.png`` (the Fit tab), ``widget_quality.png`` / ``widget_quality_dock.png``
  (Medaka), ``widget_quality_pap.png``;
- ``widget_student.png`` / ``widget_student_dock.png`` (Medaka), ``widget_student_pap.png``;
- ``plugins_menu.png``: the Plugins menu with the three widgets;
- ``widget_teacher_advanced.png``: the Teacher dock before any data, its *Advanced* settings open;
- ``widget_teacher_propagation.png`` / ``widget_teacher_propagation_dock.png``: the Teacher
  dock after training three teachers on the Medaka sample (the comparison with flow
  propagation it then shows by itself) and *Propagate* (flow), the propagated labels shown.
  ``--propagation-only`` takes these two alone.
- ``widget_cells_teacher(_dock).png``, ``cells_overlap.png``, ``widget_cells_student(_dock).png``:
  the docks' *Overlapping cells* task on the Pap smear fields (``screenshot_cells.py`` says
  how); ``--cells-only`` takes these alone.

``--steps N`` trains every network N steps instead of the widgets' defaults: a quick check of
the pictures, not the README's (they show the default settings).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication, QFileDialog

from napari_distill._widgets.common.handoff import teacher_prediction_layers
from napari_distill.core.io import read_image

logger = logging.getLogger("screenshot_tour")
DOCS = Path(__file__).resolve().parents[1] / "docs"
WINDOW_SIZE = (1366, 768)  # a laptop screen
PLUGIN = "napari-distill"
WIDGETS = ("Teacher", "Quality review", "Student (distillation)")


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Run the Qt event loop until ``condition()`` holds."""
    app = napari.qt.get_qapp()
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.01)


def settle(seconds: float = 0.7) -> None:
    """Let the canvas, the docks and the plots repaint."""
    app = napari.qt.get_qapp()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def press(widget, button, timeout_s: float = 3600) -> None:
    """Click ``button`` and wait for ``widget``'s worker to finish."""
    started = time.monotonic()
    button.click()
    wait_until(lambda: not widget.runner.is_running, timeout_s)
    logger.info(
        "%s: %r took %.0f s", type(widget).__name__, button.text(), time.monotonic() - started
    )


def open_from_menu(viewer: napari.Viewer, name: str) -> tuple:
    """``(dock, widget)``: the widget opened as *Plugins > napari-distill > name* opens it
    (``add_dock_widget`` without ``tabify``), then the time a user takes to the next click."""
    opened = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    settle()
    return opened


class Tour:
    """One viewer with one sample open and the three widgets opened from the Plugins menu."""

    def __init__(self, sample: str, out_dir: Path, suffix: str, steps: int | None) -> None:
        self.out_dir, self.suffix, self.steps = out_dir, suffix, steps
        self.viewer = napari.Viewer(show=True, title=f"napari-distill: {sample}")
        self.viewer.window._qt_window.resize(*WINDOW_SIZE)
        self.viewer.open_sample(PLUGIN, sample)
        self.docks = {name: open_from_menu(self.viewer, name) for name in WIDGETS}
        self.teacher, self.quality, self.student = (self.docks[name][1] for name in WIDGETS)
        if steps is not None:
            for widget in (self.teacher, self.student):
                widget.settings.fields[("train", "steps")].setValue(steps)

    def show(self, name: str) -> None:
        self.docks[name][0].raise_()
        settle()

    def shoot(self, stem: str, widget=None) -> None:
        """The window as ``stem{suffix}.png``; with ``widget``, also its whole dock (all its
        controls, also those scrolled out of view) as ``stem_dock.png``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{stem}{self.suffix}.png"
        self.viewer.screenshot(str(path), canvas_only=False, flash=False)
        logger.info("wrote %s", path)
        if widget is not None and not self.suffix:
            widget.content.grab().save(str(self.out_dir / f"{stem}_dock.png"))

    def show_labels(self, layer, slice_index: int | None = None) -> None:
        """Only ``layer`` among the labels layers, on ``slice_index`` (default: keep)."""
        for other in self.viewer.layers:
            if other.__class__.__name__ == "Labels":
                other.visible = other.name == layer.name
        if slice_index is not None and self.viewer.dims.ndim >= 3:
            self.viewer.dims.set_current_step(0, slice_index)
        layer.opacity = 0.55
        self.viewer.layers.selection.active = self.viewer.layers[layer.name]
        self.viewer.reset_view()
        settle()

    def unannotated_slice(self, labels) -> int:
        """The unannotated slice with the most classes in ``labels``: what was filled in."""
        sparse = self.teacher.labels_picker.layer()
        painted = np.asarray(sparse.data).reshape(sparse.data.shape[0], -1).any(1)
        candidates = np.flatnonzero(~painted)
        if candidates.size == 0:
            return 0
        counts = [np.unique(np.asarray(labels.data[i])).size for i in candidates]
        return int(candidates[int(np.argmax(counts))])

    # ------------------------------------------------------------------ the steps
    def train_teacher(self) -> None:
        self.show(WIDGETS[0])
        press(self.teacher, self.teacher.panel.train_button)
        logger.info("teacher: %s", self.teacher.model_label.text())
        press(self.teacher, self.teacher.predict_button)
        predicted = self.viewer.layers[-1]
        self.show_labels(predicted, self.unannotated_slice(predicted))
        self.teacher.panel.plot.redraw()
        self.shoot("widget_teacher", self.teacher)

    def review_quality(self) -> None:
        self.show(WIDGETS[1])
        fit = self.quality.fitting
        press(self.quality, fit.panel.train_button)
        logger.info("quality: %s", fit.model_label.text())
        self.quality.tabs.setCurrentIndex(0)
        settle()
        if not self.suffix:
            self.quality.content.grab().save(str(self.out_dir / "widget_quality_fit.png"))
        press(self.quality, self.quality.score_button)
        review = self.quality.review
        order = review.worst_first()
        review.go_to(order[len(order) // 2])
        review.accept_current()  # decisions by hand, to show how they are marked
        review.go_to(order[0])
        review.reject_current()
        logger.info("review: %s", review.counts.text())
        self.quality.tabs.setCurrentIndex(1)
        self.show_labels(teacher_prediction_layers(self.viewer)[-1])
        review.plot.canvas.draw()
        self.shoot("widget_quality", self.quality)

    def distil(self, instance_class: str | None, one_piece: tuple[str, ...] = ()) -> None:
        self.show(WIDGETS[2])
        student = self.student
        student.inputs.update_summary()
        logger.info("student inputs: %s", student.inputs.summary.text())
        press(student, student.panel.train_button)
        if one_piece:  # the clean-up row, as a user ticks organs in its menu
            names = student.bundle.class_names
            student.cleanup.largest_box.setChecked(True)
            student.cleanup.set_chosen(tuple(c for c, name in names.items() if name in one_piece))
        if instance_class is not None:
            student.instances_box.setChecked(True)
            box = student.instance_class_box
            index = next((i for i in range(box.count()) if instance_class in box.itemText(i)), 0)
            box.setCurrentIndex(index)
        press(student, student.predict_button)
        predicted = student.prediction_layer
        self.show_labels(predicted, self.unannotated_slice(predicted))
        student.panel.plot.redraw()
        # the window shows the dock's end: the run's curves and the Student box that predicted
        bar = student.scroll_area.verticalScrollBar()
        bar.setValue(bar.maximum())
        settle()
        self.shoot("widget_student", student)

    def export(self) -> None:
        """Export through the widget's button (the file dialog answered) and read it back."""
        student = self.student
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "student_labels.tif"
            original = QFileDialog.getSaveFileName
            QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(target), ""))
            try:
                student.export_button.click()
                wait_until(lambda: not student.export_runner.is_running, 600)
            finally:
                QFileDialog.getSaveFileName = original
            back = read_image(target)
            same = np.array_equal(np.asarray(back.data), np.asarray(student.prediction_layer.data))
            logger.info("exported %s: reads back equal: %s", target.name, same)
            if not same:
                raise RuntimeError("the exported labels do not read back equal")

    def close(self) -> None:
        self.viewer.close()


def shoot_plugins_menu(out_dir: Path) -> None:
    """``plugins_menu.png``: Plugins > napari-distill opened, as a new user finds the widgets."""
    viewer = napari.Viewer(show=True, title="napari")
    window = viewer.window._qt_window
    window.resize(*WINDOW_SIZE)
    settle()
    menu, bar = viewer.window.plugins_menu, window.menuBar()
    menu.popup(bar.mapToGlobal(bar.actionGeometry(menu.menuAction()).bottomLeft()))
    settle()
    ours = next(action for action in menu.actions() if action.text() == PLUGIN)
    menu.setActiveAction(ours)
    ours.menu().popup(menu.mapToGlobal(menu.actionGeometry(ours).topRight()))
    settle()
    # popup menus are windows of their own: grab the screen, not the main window
    shot = QApplication.primaryScreen().grabWindow(0, window.x(), window.y(), 700, 140)
    out_dir.mkdir(parents=True, exist_ok=True)
    shot.save(str(out_dir / "plugins_menu.png"))
    viewer.close()


# suffix, the class split into instances, the organs kept to one piece (compact, one body)
TOURS = {
    "medaka_ct": ("", None, ("brain", "heart", "liver", "swim bladder")),
    "pap_smear": ("_pap", "nucleus", ()),
}


def shoot_teacher_settings(out_dir: Path) -> None:
    """``widget_teacher_advanced.png``: the Teacher dock before any data, *Advanced* open."""
    viewer = napari.Viewer(show=True, title="napari")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    _, teacher = open_from_menu(viewer, WIDGETS[0])
    teacher.settings.advanced.expand(animate=False)
    settle()
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher.content.grab().save(str(out_dir / "widget_teacher_advanced.png"))
    viewer.close()


def shoot_student_settings(out_dir: Path) -> None:
    """``widget_student_settings.png``: the Student dock before any data, its strategy's
    settings (the ``kd`` form: temperature, weight, start, student size, noise, share)."""
    viewer = napari.Viewer(show=True, title="napari")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    _, student = open_from_menu(viewer, WIDGETS[2])
    settle()
    out_dir.mkdir(parents=True, exist_ok=True)
    student.content.grab().save(str(out_dir / "widget_student_settings.png"))
    viewer.close()


def shoot_teacher_propagation(out_dir: Path, steps: int | None) -> None:
    """``widget_teacher_propagation(_dock).png``: three teachers compared with propagation."""
    tour = Tour("medaka_ct", out_dir, "", steps)
    teacher = tour.teacher
    tour.show(WIDGETS[0])
    teacher.settings.fields[("model", "members")].setValue(3)
    press(teacher, teacher.panel.train_button)  # the comparison follows in the same runner
    logger.info("teacher vs propagation: %s", teacher.propagation.result_label.text())
    comparison = teacher.propagation.comparison
    teacher.propagation.method_box.setCurrentText("flow")
    press(teacher, teacher.propagation.propagate_button)
    teacher.propagation.comparison = comparison  # shown again below the propagated layer's name
    if comparison is not None:
        from napari_distill._widgets.teacher.propagation_panel import comparison_html

        teacher.propagation.result_label.setText(comparison_html(comparison))
    propagated = tour.viewer.layers[-1]
    tour.show_labels(propagated, tour.unannotated_slice(propagated))
    teacher.panel.plot.redraw()
    from qtpy.QtWidgets import QScrollArea

    teacher.findChild(QScrollArea).ensureWidgetVisible(teacher.propagation)  # the new box
    settle()
    tour.shoot("widget_teacher_propagation", teacher)
    tour.close()


def shoot_cells(out_dir: Path, steps: int | None) -> None:
    """The Pap smear cells pictures (``screenshot_cells.py``)."""
    from screenshot_cells import cells_tour

    cells_tour(out_dir, steps, settle, press, open_from_menu, WINDOW_SIZE)


def main(
    out_dir: Path,
    samples: list[str],
    steps: int | None = None,
    propagation_only: bool = False,
    cells_only: bool = False,
    settings_only: bool = False,
) -> None:
    if settings_only:
        shoot_teacher_settings(out_dir)
        shoot_student_settings(out_dir)
        return
    if propagation_only:
        shoot_teacher_propagation(out_dir, steps)
        return
    if cells_only:
        shoot_cells(out_dir, steps)
        return
    shoot_plugins_menu(out_dir)
    shoot_teacher_settings(out_dir)
    shoot_student_settings(out_dir)
    for sample in samples:
        suffix, instance_class, one_piece = TOURS[sample]
        tour = Tour(sample, out_dir, suffix, steps)
        tour.train_teacher()
        tour.review_quality()
        tour.distil(instance_class, one_piece)
        tour.export()
        tour.close()
    shoot_teacher_propagation(out_dir, steps)
    shoot_cells(out_dir, steps)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    parser.add_argument(
        "--samples", nargs="+", choices=sorted(TOURS), default=list(TOURS), help="tours to take"
    )
    parser.add_argument(
        "--steps", type=int, default=None,
        help="steps of every training (default: the widgets' own); for a quick look only",
    )  # fmt: skip
    parser.add_argument(
        "--propagation-only", action="store_true",
        help="only widget_teacher_propagation(_dock).png",
    )  # fmt: skip
    parser.add_argument(
        "--cells-only", action="store_true",
        help="only the Pap smear cells pictures (widget_cells_*.png, cells_overlap.png)",
    )  # fmt: skip
    parser.add_argument(
        "--settings-only", action="store_true",
        help="only the docks before any data (widget_teacher_advanced.png, "
        "widget_student_settings.png)",
    )  # fmt: skip
    args = parser.parse_args()
    main(
        args.out, args.samples, args.steps, args.propagation_only, args.cells_only,
        args.settings_only,
    )  # fmt: skip
