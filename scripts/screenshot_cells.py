"""The Pap smear cells part of ``screenshot_tour.py`` (``--cells-only`` takes it alone).

The plugin's sample *Pap smear, overlapping cells painted*: the cells and nuclei of the
first two fields painted, as a user paints them: cells in one Labels layer with its plane axis
first, nuclei in another. With the docks' *Overlapping cells* task and default settings (the
student's steps excepted, see ``STUDENT_STEPS``) it trains the cell teacher and predicts, then
the ``mean-teacher`` student, and writes:

- ``widget_cells_teacher.png`` / ``widget_cells_teacher_dock.png``: the Teacher dock after
  predicting an unpainted field: nuclei and one outline layer per plane;
- ``cells_overlap.png``: zoomed on two overlapping predicted cells of an unpainted field, the
  pair chosen in the per-cell table and shown alone with napari's *show selected* on their
  two plane layers: each outline whole, the shared pixels inside both;
- ``widget_cells_student.png`` / ``widget_cells_student_dock.png``: the Student dock after a
  ``mean-teacher`` run and its prediction.
"""

from __future__ import annotations

import logging
from pathlib import Path

import napari
import numpy as np

from napari_distill._sample_data import CELL_PAINTED_FIELDS
from napari_distill._widgets.common.task_switch import CELLS

logger = logging.getLogger("screenshot_tour")
STUDENT_STEPS = 100  # a third of the default: the tour's picture, not a benchmark


def _pair(rows, annotated: set[int]):
    """Two overlapping cells of an unpainted field, as easy to see as the field has: each
    overlapping as few other cells as can be, then the largest smaller cell."""
    by_id = {(r.field, r.cell): r for r in rows}
    best, best_key = None, None
    for row in rows:
        if row.field in annotated:
            continue
        for other in row.overlaps:
            partner = by_id[(row.field, other)]
            crowd = max(len(row.overlaps), len(partner.overlaps))
            key = (-crowd, min(row.area, partner.area))
            if best_key is None or key > best_key:
                best, best_key = (row, partner), key
    return best


def _isolate(viewer: napari.Viewer, plane_layers, pair) -> None:
    """Only the pair's two outlines (napari's *show selected* on their plane layers)."""
    shown = {row.plane: row.cell for row in pair}
    for plane, layer in enumerate(plane_layers):
        layer.visible = plane in shown
        if plane in shown:
            layer.selected_label = shown[plane]
            layer.show_selected_label = True
            layer.contour = 3
    for layer in viewer.layers:
        if layer.__class__.__name__ == "Labels" and layer not in plane_layers:
            layer.visible = False


def show_field(viewer: napari.Viewer, layer, field: int) -> None:
    """Move the field slider (the axis before a ``(N, H, W)`` layer's last two) to ``field``."""
    axis = viewer.dims.ndim - layer.ndim
    viewer.dims.set_point(axis, float(layer.data_to_world((field, 0, 0))[0]))


def _zoom_on(viewer: napari.Viewer, layer, pair) -> None:
    show_field(viewer, layer, pair[0].field)
    # The table's centres and areas are in pixels; the camera works in world units (um).
    centres = np.array([layer.data_to_world((row.field, *row.centre))[-2:] for row in pair])
    radius = max(np.sqrt(row.area / np.pi) for row in pair) * float(layer.scale[-1])
    viewer.camera.center = tuple(centres.mean(0))
    span = np.ptp(centres, axis=0).max() + 2.6 * radius
    canvas = viewer.window._qt_viewer.canvas.size
    viewer.camera.zoom = 0.95 * min(canvas) / span


def cells_tour(out_dir: Path, steps: int | None, settle, press, open_from_menu, window_size):
    """Train and predict cells in both docks and write the PNGs named above."""
    viewer = napari.Viewer(show=True, title="napari-distill: Pap smear cells")
    viewer.window._qt_window.resize(*window_size)
    viewer.open_sample("napari-distill", "pap_smear_cells")  # cells painted on 2 fields of 4
    dock, teacher = open_from_menu(viewer, "Teacher")
    teacher.task_switch.set_task(CELLS)
    task = teacher.cells_task
    if steps is not None:
        task.settings.fields["steps"].setValue(steps)
    settle()
    logger.info("cells: %s", task.inputs.summary.text())
    press(task, task.panel.train_button)
    press(task, task.model_box.predict_button)
    logger.info("cell teacher: %s", task.model_box.status.text())
    for name in ("pap cells", "pap nuclei"):
        viewer.layers[name].visible = False
    planes_layers = task.model_box.table.plane_layers
    pair = _pair(task.model_box.table.rows, set(range(CELL_PAINTED_FIELDS)))
    field = pair[0].field if pair else CELL_PAINTED_FIELDS
    viewer.reset_view()
    show_field(viewer, planes_layers[0], field)
    task.panel.plot.redraw()
    bar = teacher.scroll_area.verticalScrollBar()  # the window shows the curve and the model
    bar.setValue(bar.maximum())
    settle()
    out_dir.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out_dir / "widget_cells_teacher.png"), canvas_only=False, flash=False)
    teacher.content.grab().save(str(out_dir / "widget_cells_teacher_dock.png"))
    if pair is not None:
        table = task.model_box.table
        table.selectRow(next(r for r in range(table.rowCount()) if table.row_of(r) is pair[0]))
        _zoom_on(viewer, planes_layers[0], pair)
        _isolate(viewer, planes_layers, pair)
        dock.widget().findChild(type(teacher.scroll_area)).ensureWidgetVisible(table)
        settle()
        viewer.screenshot(str(out_dir / "cells_overlap.png"), canvas_only=False, flash=False)
        logger.info("overlap: field %d, cells %d and %d", field, pair[0].cell, pair[1].cell)

    _, student = open_from_menu(viewer, "Student (distillation)")
    student.task_switch.set_task(CELLS)
    s_task = student.cells_task
    # The painted layers were hidden for the teacher's shots: pick them, not the hidden truth.
    s_task.inputs.cells_picker.select(viewer.layers["pap cells"])
    s_task.inputs.nuclei_picker.select(viewer.layers["pap nuclei"])
    s_task.settings.fields["steps"].setValue(steps or STUDENT_STEPS)
    settle()
    press(s_task, s_task.panel.train_button)
    press(s_task, s_task.model_box.predict_button)
    logger.info("cell student: %s", s_task.model_box.status.text())
    for layer in viewer.layers:  # the student's own prediction only
        if layer.__class__.__name__ == "Labels":
            layer.visible = " student " in layer.name
    viewer.reset_view()
    show_field(viewer, planes_layers[0], field)
    s_task.panel.plot.redraw()
    bar = student.scroll_area.verticalScrollBar()
    bar.setValue(bar.maximum())
    settle()
    viewer.screenshot(str(out_dir / "widget_cells_student.png"), canvas_only=False, flash=False)
    student.content.grab().save(str(out_dir / "widget_cells_student_dock.png"))
    viewer.close()
