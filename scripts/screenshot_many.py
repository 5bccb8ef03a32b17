"""Screenshots of many volumes in one viewer (issue 26): the Teacher with several images, the
Quality review's *All images* tab and the Student with *All images of the teacher*.

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python scripts/screenshot_many.py

Writes a folder of synthetic fish (different seeds; the first with painted slices as
``fish_1_labels.tif``), opens it as a user does with the Teacher's *Open folder of volumes*
(one lazy layer per volume), ticks *Several images*, trains one teacher and predicts every
fish; then scores every slice of every fish in the Quality review and jumps to the worst slice
of an unpainted fish (tau lowered to the median score, so that accepted and rejected slices
both show after so short a training); then trains the student on all of them and predicts
each. Writes
``docs/widget_many_teacher.png`` (+ ``_dock``), ``docs/widget_many_quality.png`` (+ ``_dock``)
and ``docs/widget_many_student_dock.png``. ``--steps`` trains every network that many steps
(the pictures show the layout, not a finished model).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import napari
import tifffile
from screenshot_tour import PLUGIN, WINDOW_SIZE, open_from_menu, press, settle

from napari_distill._widgets.common.image_set import open_volume_folder
from napari_distill.core.samples import make_medaka

logger = logging.getLogger("screenshot_many")
DOCS = Path(__file__).resolve().parents[1] / "docs"


def write_fish(folder: Path, count: int, shape: tuple[int, ...]) -> None:
    for number in range(1, count + 1):
        fish = make_medaka(shape, n_annotated=4, seed=number)
        tifffile.imwrite(folder / f"fish_{number}.tif", fish.image)
        if number == 1:
            tifffile.imwrite(folder / "fish_1_labels.tif", fish.labels_sparse)


def shoot(viewer: napari.Viewer, widget, stem: str, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out_dir / f"{stem}.png"), canvas_only=False, flash=False)
    widget.content.grab().save(str(out_dir / f"{stem}_dock.png"))
    logger.info("wrote %s", out_dir / f"{stem}.png")


def main(count: int, shape: tuple[int, ...], steps: int, out_dir: Path) -> None:
    viewer = napari.Viewer(show=True, title="napari-distill: many fish")
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    with tempfile.TemporaryDirectory() as scratch:
        write_fish(Path(scratch), count, shape)
        _dock, teacher = open_from_menu(viewer, "Teacher")
        open_volume_folder(viewer, scratch)
        teacher.image_set.setChecked(True)
        teacher.settings.fields[("train", "steps")].setValue(steps)
        settle()
        press(teacher, teacher.panel.train_button)
        press(teacher, teacher.predict_button)
        for layer in viewer.layers:  # the first fish, its paint and its prediction
            layer.visible = layer.name.startswith("fish_1")
        viewer.dims.set_current_step(0, shape[0] // 2)
        teacher.panel.plot.redraw()
        settle()
        shoot(viewer, teacher, "widget_many_teacher", out_dir)

        _dock, quality = open_from_menu(viewer, "Quality review")
        fields = quality.fitting.settings.fields
        fields["steps"].setValue(steps)
        panel = quality.project_review
        quality.tabs.setCurrentWidget(panel)
        settle()
        panel.score_button.click()
        while panel.runner.is_running:
            settle(0.2)
        # the user lowers tau to the median score: half the pseudo-labels accepted, to show both
        scores = sorted(v for s in panel.selection.selections.values() for v in s.scores.values())
        panel.tau_slider.setValue(round(scores[len(scores) // 2], 2))
        unpainted = next(r for r, (name, _i) in enumerate(panel.rows) if name != "fish_1")
        panel.table.setCurrentCell(unpainted, 0)  # shows that fish on that slice
        settle()
        shoot(viewer, quality, "widget_many_quality", out_dir)

        _dock, student = open_from_menu(viewer, "Student (distillation)")
        student.settings.fields[("train", "steps")].setValue(steps)
        student.project.setChecked(True)
        settle()
        press(student, student.panel.train_button)
        press(student, student.predict_button)
        student.panel.plot.redraw()
        settle()
        student.content.grab().save(str(out_dir / "widget_many_student_dock.png"))
        viewer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fish", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=(40, 256, 128))
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--out-dir", type=Path, default=DOCS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(args.fish, tuple(args.shape), args.steps, args.out_dir)
    logger.info("plugin %s", PLUGIN)
