"""Screenshots of the Student (distillation) dock widget after a short distillation.

Needs a display with OpenGL; headless, run it under Xvfb from the repository root:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_student.py

For each sample (the plugin's Medaka CT and Pap smear sample data) it docks the Teacher,
Quality review and Student widgets (tabbed, Student in front), trains a short teacher and
predicts, fits the quality classifier and scores the slices, then trains the student through
its widget (so the curve shows) and predicts. It writes ``docs/widget_student.png`` (the whole
window) and ``docs/widget_student_dock.png`` (the dock) for the Medaka CT, and
``docs/widget_student_pap.png`` for the Pap smear (nuclei split into instances).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np

logger = logging.getLogger("screenshot_student")
DOCS = Path(__file__).resolve().parents[1] / "docs"
WINDOW_SIZE = (1600, 1000)
PLUGIN = "napari-distill"


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Run the Qt event loop until ``condition()`` holds."""
    app = napari.qt.get_qapp()
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.01)


def press(widget, button, timeout_s: float = 1800) -> None:
    """Click ``button`` and wait for ``widget``'s worker to finish."""
    started = time.monotonic()
    button.click()
    wait_until(lambda: not widget.runner.is_running, timeout_s)
    took = time.monotonic() - started
    logger.info("%s: %s took %.0f s", type(widget).__name__, button.text(), took)


def settle(seconds: float = 0.5) -> None:
    """Let the canvas, the docks and the plots repaint."""
    app = napari.qt.get_qapp()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)


def distil(sample: str, teacher_steps: int, student_steps: int, instances: bool):
    """A viewer with ``sample`` open and a student trained and predicted through the widgets."""
    viewer = napari.Viewer(show=True, title="napari-distill: Student (distillation)")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN, sample)
    docks = {}
    for name in ("Teacher", "Quality review", "Student (distillation)"):
        docks[name] = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    window = viewer.window._qt_window
    window.tabifyDockWidget(docks["Teacher"][0], docks["Quality review"][0])
    window.tabifyDockWidget(docks["Quality review"][0], docks["Student (distillation)"][0])
    teacher, quality, student = (docks[name][1] for name in docks)

    fields = teacher.settings.fields
    fields[("train", "steps")].setValue(teacher_steps)
    fields[("train", "validate_every")].setValue(max(1, teacher_steps // 10))
    fields[("model", "base_channels")].setValue(8)
    press(teacher, teacher.panel.train_button)
    press(teacher, teacher.predict_button)

    quality.fitting.settings.fields["steps"].setValue(40)
    press(quality, quality.fitting.panel.train_button)
    press(quality, quality.score_button)
    # as a user would after a short fit: lower the threshold to keep the better half
    selection = quality.review.selection
    scores = [v for i, v in selection.scores.items() if i not in selection.annotated]
    quality.review.tau_slider.setValue(float(np.nanmedian(scores)))

    docks["Student (distillation)"][0].raise_()
    student.inputs.update_summary()
    fields = student.settings.fields
    fields[("train", "steps")].setValue(student_steps)
    fields[("train", "validate_every")].setValue(max(1, student_steps // 12))
    student.instances_box.setChecked(instances)
    press(student, student.panel.train_button)
    if instances:
        nucleus = next(
            (i for i in range(student.instance_class_box.count())
             if "nucleus" in student.instance_class_box.itemText(i)),
            0,
        )  # fmt: skip
        student.instance_class_box.setCurrentIndex(nucleus)
    press(student, student.predict_button)
    return viewer, student


def show_prediction(viewer, student) -> None:
    """Show the student's labels over the image on an unannotated slice with most classes."""
    predicted = student.prediction_layer
    for layer in viewer.layers:
        # the widget holds a plugin proxy of the layer: compare names, not identities
        if layer.name != predicted.name and layer.__class__.__name__ == "Labels":
            layer.visible = False
    sparse = student.inputs.labels_picker.layer()
    painted = np.asarray(sparse.data).reshape(sparse.data.shape[0], -1).any(1)
    candidates = np.flatnonzero(~painted)
    counts = [np.unique(predicted.data[i]).size for i in candidates]
    viewer.dims.set_current_step(0, int(candidates[int(np.argmax(counts))]))
    predicted.opacity = 0.55
    viewer.layers.selection.active = predicted
    viewer.reset_view()
    student.panel.plot.redraw()
    settle(1.0)


def main(teacher_steps: int, student_steps: int, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    viewer, student = distil("medaka_ct", teacher_steps, student_steps, instances=False)
    show_prediction(viewer, student)
    viewer.screenshot(str(out_dir / "widget_student.png"), canvas_only=False, flash=False)
    student.content.grab().save(str(out_dir / "widget_student_dock.png"))  # unscrolled
    viewer.close()

    viewer, student = distil("pap_smear", teacher_steps, student_steps, instances=True)
    show_prediction(viewer, student)
    viewer.screenshot(str(out_dir / "widget_student_pap.png"), canvas_only=False, flash=False)
    viewer.close()
    logger.info("wrote the screenshots to %s", out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=120, help="default 120")
    parser.add_argument("--student-steps", type=int, default=120, help="default 120")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    args = parser.parse_args()
    main(args.teacher_steps, args.student_steps, args.out)
