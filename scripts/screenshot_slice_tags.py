"""Screenshots of slice tags in the Student dock (strategy ``mixed``), as a user enters them.

Headless, under Xvfb at a laptop's screen size, from the repository root:

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_slice_tags.py

On the Medaka sample: the Teacher widget trains a short teacher (``--steps``, default 40: the
pictures show the tags, not the teacher) and predicts; the Student widget is set to *Mixed
supervision*, with a scribbles layer (``simulate_scribbles``) on three slices nobody painted;
then three other slices are tagged through *Tag this slice...*, the dialog's boxes ticked with
the classes the hidden ground truth shows there. Writes

- ``widget_student_tags.png``: the screen with the tag dialog open over the viewer;
- ``widget_student_tags_dock.png``: the whole Student dock afterwards (table and counts).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication, QDialog
from screenshot_tour import DOCS, PLUGIN, WIDGETS, WINDOW_SIZE, open_from_menu, press, settle

from napari_distill._widgets.common.slices import go_to_slice
from napari_distill._widgets.student import slice_tags
from napari_distill.core.samples import simulate_scribbles

logger = logging.getLogger("screenshot_slice_tags")


def unpainted_slices_with_most_classes(truth: np.ndarray, painted: np.ndarray, n: int) -> list:
    """``n`` slices nobody painted, those showing the most classes first, far apart."""
    free = np.flatnonzero(~painted.reshape(len(painted), -1).any(1))
    ranked = sorted(free, key=lambda i: -np.unique(truth[i]).size)
    chosen: list[int] = []
    for index in ranked:
        if all(abs(index - other) > 2 for other in chosen):
            chosen.append(int(index))
        if len(chosen) == n:
            break
    return sorted(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="the teacher's training steps")
    parser.add_argument("--out-dir", type=Path, default=DOCS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    viewer = napari.Viewer(show=True, title="napari-distill: slice tags")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    viewer.open_sample(PLUGIN, "medaka_ct")
    _, teacher = open_from_menu(viewer, WIDGETS[0])
    teacher.settings.fields[("train", "steps")].setValue(args.steps)
    press(teacher, teacher.panel.train_button)
    press(teacher, teacher.predict_button)
    dock, student = open_from_menu(viewer, WIDGETS[2])
    dock.raise_()
    combo = student.strategy.combo
    combo.setCurrentIndex(combo.findData("mixed"))

    truth = np.asarray(viewer.layers["medaka truth"].data)
    painted_layer = viewer.layers["medaka painted"]
    painted = np.asarray(painted_layer.data)
    slices = unpainted_slices_with_most_classes(truth, painted, 6)
    scribbled, tagged = slices[::2], slices[1::2]
    scribbles = simulate_scribbles(truth, scribbled, length=20)
    viewer.add_labels(scribbles, name="scribbles", scale=painted_layer.scale)
    student.inputs.labels_picker.select(painted_layer)
    student.inputs.weak.scribbles_picker.select(viewer.layers["scribbles"])
    for layer in viewer.layers:
        layer.visible = layer.name in ("medaka CT", "medaka painted", "scribbles")
    settle()

    out_dir = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    shot_taken = []

    def answer(dialog: slice_tags.TagDialog) -> int:
        """Tick what the ground truth shows on the dialog's slice, as a user would, and OK."""
        index = int(dialog.windowTitle().split()[-1])
        for class_id in np.unique(truth[index]):
            if int(class_id) in student.inputs.weak.tags_panel.classes():
                dialog.item(int(class_id)).setCheckState(slice_tags.Qt.CheckState.Checked)
        if not shot_taken:  # the dialog is a window of its own: grab the screen
            dialog.show()
            settle()
            window = viewer.window._qt_window
            shot = QApplication.primaryScreen().grabWindow(0, window.x(), window.y(), *WINDOW_SIZE)
            shot.save(str(out_dir / "widget_student_tags.png"))
            shot_taken.append(index)
        return QDialog.DialogCode.Accepted

    slice_tags.TagDialog.exec_ = answer  # the user's clicks in the modal dialog
    panel = student.inputs.weak.tags_panel
    for index in tagged:
        go_to_slice(viewer, painted_layer, index)
        settle(0.3)
        panel.tag_button.click()
    student.inputs.update_summary()
    settle()
    logger.info("tags: %s", panel.tags)
    logger.info("counts: %s", student.inputs.weak.counts.text())
    student.content.grab().save(str(out_dir / "widget_student_tags_dock.png"))
    logger.info("wrote %s", out_dir / "widget_student_tags_dock.png")
    viewer.close()


if __name__ == "__main__":
    main()
