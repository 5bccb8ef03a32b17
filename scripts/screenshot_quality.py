"""Screenshots of the Quality review dock widget after a fit and a scoring of every slice.

Needs a display with OpenGL; headless, run it under Xvfb from the repository root:

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python scripts/screenshot_quality.py

Opens the Medaka sample through the plugin's sample data, trains a short teacher through the
core (keeping snapshots of its weights), predicts the stack and adds the prediction the way the
Teacher widget does, docks the Quality review widget, fits the classifier and scores the slices
through the widget's own worker path, rejects the worst slice and accepts another by hand, and
writes ``docs/widget_quality.png`` (the whole window), ``docs/widget_quality_dock.png`` (the
dock on its Review tab) and ``docs/widget_quality_fit.png`` (the dock on its Fit tab).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

import napari

from napari_distill._widgets._shared import (
    TEACHER_ROLE,
    SourceLayer,
    add_layer_data,
    handoff,
    layer_data_for,
)
from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.quality import SnapshotRecorder
from napari_distill.core.teacher import train_teacher

logger = logging.getLogger("screenshot_quality")
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


def drain(generator):
    """Iterate a core generator to its end; its return value."""
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def add_teacher_prediction(viewer: napari.Viewer, teacher_steps: int) -> None:
    """Train a short teacher through the core and add its prediction as the Teacher widget does."""
    image = viewer.layers["Medaka CT (synthetic)"]
    sparse = viewer.layers["Medaka annotations (sparse)"]
    started = time.monotonic()
    run = train_teacher(
        image.data, sparse.data,
        model_config=ModelConfig(base_channels=8),
        train_config=TrainConfig(steps=teacher_steps, patch_size=96, batch_size=4,
                                 validate_every=max(1, teacher_steps // 6)),
        class_names=image.metadata.get("class_names"),
    )  # fmt: skip
    recorder = SnapshotRecorder(run.model)
    drain(recorder.record(run.steps()))
    bundle = run.best_bundle()
    logger.info("teacher: %d steps in %.0f s", run.step, time.monotonic() - started)
    prediction = drain(predict_bundle(bundle, image.data, keep_probabilities=True))
    data = layer_data_for(
        prediction, SourceLayer.from_layer(image), bundle=bundle, role=TEACHER_ROLE,
        label="teacher",
    )  # fmt: skip
    layer = add_layer_data(viewer, data)[0]
    handoff(layer)["snapshots"] = recorder.snapshots  # earlier weights: more varied variants


def settle(widget) -> None:
    widget.review.plot.canvas.draw()
    for _ in range(30):  # let the canvas and the dock repaint
        napari.qt.get_qapp().processEvents()
        time.sleep(0.02)


def main(teacher_steps: int, quality_steps: int, out_dir: Path) -> None:
    viewer = napari.Viewer(show=True, title="napari-distill: Quality review")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    viewer.open_sample("napari-distill", "medaka_ct")
    viewer.layers["Medaka ground truth"].visible = False
    add_teacher_prediction(viewer, teacher_steps)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-distill", "Quality review")
    widget.fitting.settings.fields["steps"].setValue(quality_steps)
    wait_until(lambda: True, 1)

    started = time.monotonic()
    widget.fitting.panel.train_button.click()
    wait_until(lambda: not widget.runner.is_running, timeout_s=1800)
    logger.info("quality classifier fitted in %.0f s", time.monotonic() - started)
    logger.info("%s", widget.fitting.model_label.text())
    widget.tabs.setCurrentIndex(0)
    settle(widget)
    out_dir.mkdir(parents=True, exist_ok=True)
    widget.grab().save(str(out_dir / "widget_quality_fit.png"))

    widget.score_button.click()
    wait_until(lambda: not widget.runner.is_running, timeout_s=600)
    review = widget.review
    order = review.worst_first()
    review.go_to(order[len(order) // 2])
    review.accept_current()  # a decision by hand, to show how it is marked
    review.go_to(order[0])
    review.reject_current()

    predicted = viewer.layers["Medaka CT (synthetic) teacher labels"]
    viewer.layers["Medaka annotations (sparse)"].visible = False
    predicted.opacity = 0.5
    viewer.layers.selection.active = predicted
    viewer.reset_view()
    settle(widget)
    viewer.screenshot(str(out_dir / "widget_quality.png"), canvas_only=False, flash=False)
    widget.grab().save(str(out_dir / "widget_quality_dock.png"))
    logger.info("wrote the screenshots to %s; %s", out_dir, review.counts.text())
    viewer.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher-steps", type=int, default=120, help="teacher steps (120)")
    parser.add_argument("--quality-steps", type=int, default=150, help="classifier steps (150)")
    parser.add_argument("--out", type=Path, default=DOCS, help="folder for the PNGs")
    args = parser.parse_args()
    main(args.teacher_steps, args.quality_steps, args.out)
