"""Screenshots of the Teacher dock widget after a short training run and a prediction.

Needs a display with OpenGL; headless, run it under Xvfb from the repository root:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_teacher.py

Opens the Medaka sample through the plugin's sample data, docks the Teacher widget, trains a
teacher for a short while through the widget's own worker path, predicts, and writes
``docs/widget_teacher.png`` (the whole window) and ``docs/widget_teacher_dock.png`` (the dock).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np

logger = logging.getLogger("screenshot_teacher")
DOCS = Path(__file__).resolve().parents[1] / "docs"
WINDOW_SIZE = (1600, 1000)


def wait_until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Run the Qt event loop until ``condition()`` holds."""
    app = napari.qt.get_qapp()
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout_s:.0f} s")
        app.processEvents()
        time.sleep(0.01)


def main(steps: int, out_dir: Path) -> None:
    viewer = napari.Viewer(show=True, title="napari-distill: Teacher")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    viewer.open_sample("napari-distill", "medaka_ct")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-distill", "Teacher")
    fields = widget.settings.fields
    fields[("train", "steps")].setValue(steps)
    fields[("model", "base_channels")].setValue(8)
    wait_until(lambda: True, 1)

    started = time.monotonic()
    widget.panel.train_button.click()
    wait_until(lambda: not widget.runner.is_running, timeout_s=1800)
    logger.info("trained %d steps in %.0f s", widget.run.step, time.monotonic() - started)
    widget.predict_button.click()
    wait_until(lambda: not widget.runner.is_running, timeout_s=600)

    predicted = viewer.layers[-1]
    sparse = viewer.layers["Medaka annotations (sparse)"]
    annotated = np.flatnonzero(np.asarray(sparse.data).reshape(sparse.data.shape[0], -1).any(1))
    # an unannotated slice amid the annotated ones: what the teacher filled in
    middle = int(np.median(annotated))
    shown = min(
        set(range(sparse.data.shape[0])) - set(annotated.tolist()), key=lambda i: abs(i - middle)
    )
    viewer.dims.set_current_step(0, shown)
    sparse.visible = False
    predicted.opacity = 0.5
    viewer.layers.selection.active = predicted
    viewer.reset_view()
    wait_until(lambda: True, 1)
    widget.panel.plot.redraw()
    for _ in range(20):  # let the canvas and the dock repaint
        napari.qt.get_qapp().processEvents()
        time.sleep(0.02)

    out_dir.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out_dir / "widget_teacher.png"), canvas_only=False, flash=False)
    widget.grab().save(str(out_dir / "widget_teacher_dock.png"))
    logger.info(
        "wrote %s and %s", out_dir / "widget_teacher.png", out_dir / "widget_teacher_dock.png"
    )
    viewer.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (default 300)")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    args = parser.parse_args()
    main(args.steps, args.out)
