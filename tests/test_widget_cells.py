"""The Teacher and Student docks on a Pap smear stack with painted cells and nuclei, driven as a
user would: a real viewer, real workers. Cells are painted as one Labels layer with its plane
axis first (plane, field, y, x); predictions come back as a nuclei layer and one outline layer
per plane; the Student trains ``mean-teacher``, stops, resumes, saves and resumes from file.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_distill._widgets.common import workers
from napari_distill._widgets.common.cells_layers import (
    CELL_TEACHER_ROLE,
    add_cell_layers,
    cell_layer_data,
    count_painted,
)
from napari_distill._widgets.common.handoff import METADATA_KEY, SourceLayer
from napari_distill._widgets.common.task_switch import CELLS
from napari_distill._widgets.student.widget import StudentWidget
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.io import read_cell_planes, write_cell_planes
from napari_distill.core.models.cells import CellModelConfig, load_training_state
from napari_distill.core.samples import make_pap_smear
from napari_distill.core.strategies.cell_runs import prepare_cell_inputs, teacher_cell_run
from napari_distill.core.training.cells import CellTrainConfig

TIMEOUT_MS = 120_000
SMALL = {"patch_size": 48, "nucleus_batch": 1, "cell_batch": 2}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sample():
    """Three RGB fields of 96 x 96; cells and nuclei painted on the first two."""
    pap = make_pap_smear(n_fields=3, field_shape=(96, 96), seed=3)
    cells = pap.cytoplasm_planes.copy()  # (P, N, H, W): the plane axis first, as in napari
    nuclei = pap.nuclei.copy()
    cells[:, 2] = 0
    nuclei[2] = 0
    return pap, cells, nuclei


@pytest.fixture(scope="module")
def teacher_model(sample):
    pap, cells, nuclei = sample
    inputs = prepare_cell_inputs(pap.image, cells.swapaxes(0, 1), nuclei, rgb=True)
    config = CellModelConfig(width=8, depth=2, crop_size=32)
    run = teacher_cell_run(inputs, config, CellTrainConfig(steps=3, **SMALL))
    for _ in run.steps():
        pass
    return run.model


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(workers, "show_error", shown.append)
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    for module in ("teacher.cells_task", "student.cells_task", "common.cells_model_box"):
        monkeypatch.setattr(f"napari_distill._widgets.{module}.show_error", shown.append)
    return shown


def open_sample(make_napari_viewer, sample):
    pap, cells, nuclei = sample
    viewer = make_napari_viewer()
    viewer.add_image(pap.image, name="pap", rgb=True)
    viewer.add_labels(cells, name="cells", metadata={"cell_planes": True})
    viewer.add_labels(nuclei, name="nuclei")
    return viewer


def small(task, steps: int) -> None:
    fields = task.settings.fields
    fields["steps"].setValue(steps)
    for name, value in SMALL.items():
        fields[name].setValue(value)


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_idle(qtbot, task) -> None:
    qtbot.waitUntil(lambda: not task.runner.is_running, timeout=TIMEOUT_MS)


def test_painted_cells_are_counted_with_their_overlaps():
    planes = np.zeros((2, 2, 8, 8), np.uint16)
    planes[0, 0, 1:5, 1:5] = 1
    planes[0, 1, 3:7, 3:7] = 2  # overlaps cell 1
    planes[0, 0, 6:8, 0:2] = 3
    nuclei = np.zeros((2, 8, 8), np.uint16)
    nuclei[0, 2, 2] = 1
    nuclei[0, 5, 5] = 2
    counted = count_painted(planes, nuclei)
    assert counted.annotated == [0] and counted.cells == 3 and counted.overlapping == 2
    assert counted.nuclei == 2 and counted.without_nucleus == 1 and counted.planes_used == 2
    assert "1 of 2 fields painted (0): 3 cells (2 overlapping another)" in counted.text()


def test_teacher_dock_trains_cells_and_predicts_planes_and_nuclei(
    qtbot, make_napari_viewer, sample, errors
):
    pap, cells, nuclei = sample
    viewer = open_sample(make_napari_viewer, sample)
    dock = TeacherWidget(viewer)
    viewer.window.add_dock_widget(dock)
    task = dock.cells_task
    assert task.isHidden() and not dock.task_switch.semantic.isHidden()
    dock.task_switch.set_task(CELLS)
    assert not task.isHidden() and dock.task_switch.semantic.isHidden()
    inputs = task.inputs
    assert inputs.image_picker.layer().name == "pap"
    assert inputs.cells_picker.layer().name == "cells"
    assert inputs.nuclei_picker.layer().name == "nuclei"  # not the cells: their shape differs
    expected = count_painted(cells.swapaxes(0, 1), nuclei)
    assert f"2 of 3 fields painted (0, 1): {expected.cells} cells" in inputs.summary.text()
    assert expected.overlapping > 0  # the sample's cells overlap

    small(task, steps=3)
    click(qtbot, task.panel.train_button)
    wait_idle(qtbot, task)
    assert errors == []
    assert task.session.run.step == 3 and task.session.model is not None
    assert "Training finished at step 3 of 3" in task.panel.status_label.text()
    assert "cell teacher (supervised) at step 3" in task.model_box.model_label.text()

    before = {layer.name for layer in viewer.layers}
    click(qtbot, task.model_box.predict_button)
    wait_idle(qtbot, task)
    assert errors == []
    added = [layer for layer in viewer.layers if layer.name not in before]
    names = [layer.name for layer in added]
    assert names[0] == "pap teacher nuclei" and names[1] == "pap teacher cells 1"
    assert all(layer.data.shape == (3, 96, 96) for layer in added)
    planes = [layer for layer in added if layer.metadata[METADATA_KEY]["plane"] is not None]
    assert all(layer.contour == 2 for layer in planes)  # outlines: overlapping cells show whole
    assert added[0].metadata[METADATA_KEY]["role"] == CELL_TEACHER_ROLE
    np.testing.assert_array_equal(viewer.layers["cells"].data, cells)  # the paint is untouched
    table = task.model_box.table
    per_field = sum(np.count_nonzero(np.unique(field)) for layer in planes for field in layer.data)
    assert table.rowCount() == len(table.rows) == per_field > 0
    table.selectRow(0)  # a row shows its cell: its field, its plane layer, its id
    row = table.row_of(0)
    assert viewer.layers.selection.active is planes[row.plane]
    assert planes[row.plane].selected_label == row.cell

    viewer.layers["cells"].data = np.zeros_like(cells)  # as if erased: the count follows
    qtbot.waitUntil(lambda: "No field is painted yet" in inputs.summary.text(), timeout=5000)
    click(qtbot, task.panel.train_button)
    assert errors and "No cell is painted in 'cells'" in errors[-1]
    assert not task.runner.is_running


def test_student_dock_trains_mean_teacher_stops_and_resumes(
    qtbot, make_napari_viewer, sample, teacher_model, errors, tmp_path, monkeypatch
):
    pap, _, _ = sample
    viewer = open_sample(make_napari_viewer, sample)
    source = SourceLayer.from_layer(viewer.layers["pap"])
    predicted = np.zeros((3, 1, 96, 96), np.uint32), np.zeros((3, 96, 96), np.uint32)
    layers = cell_layer_data(
        *predicted, source, label="teacher", role=CELL_TEACHER_ROLE, model=teacher_model
    )
    add_cell_layers(viewer, layers)
    dock = StudentWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.task_switch.set_task(CELLS)
    task = dock.cells_task
    assert task.teacher_box.currentText() == "pap teacher nuclei"
    assert task.teacher() is teacher_model
    assert task.strategy() == "mean-teacher" and not task.strategy_settings.isHidden()
    assert task.inputs.nuclei_picker.layer().name == "nuclei"  # not the teacher's prediction
    assert "running-average" in task.strategy_box.toolTip()
    assert "teacher" in task.strategy_form.fields["ema_decay"].toolTip()
    small(task, steps=6)
    task.strategy_form.fields["rampup_steps"].setValue(0)  # the unpainted field counts at once
    task.strategy_form.fields["unlabeled_windows"].setValue(2)

    click(qtbot, task.panel.train_button)
    qtbot.waitUntil(lambda: task.session.run is not None and task.session.run.step >= 2,
                    timeout=TIMEOUT_MS)  # fmt: skip
    click(qtbot, task.panel.stop_button)
    wait_idle(qtbot, task)
    run = task.session.run
    stopped = run.step
    assert errors == [] and 2 <= stopped < 6
    assert "Training stopped" in task.panel.status_label.text()
    assert run.history[-1].phase == "mean-teacher"
    saved = tmp_path / "student.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(saved), ""))
    click(qtbot, task.model_box.save_button)
    assert load_training_state(saved)["objective"]["teacher"]  # the EMA teacher is in the file

    click(qtbot, task.panel.resume_button)  # the stopped run, in memory
    wait_idle(qtbot, task)
    assert errors == [] and task.session.run is run and run.step == 6
    assert not task.panel.resume_button.isEnabled()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    click(qtbot, task.model_box.load_button)
    assert task.session.step == stopped and task.panel.resume_button.isEnabled()
    click(qtbot, task.panel.resume_button)  # the file: student, EMA teacher, optimiser
    wait_idle(qtbot, task)
    assert errors == []
    resumed = task.session.run
    assert resumed is not run and resumed.step == 6 and resumed.extra["strategy"] == "mean-teacher"
    assert len(resumed.history) == 6 - stopped

    click(qtbot, task.model_box.predict_button)
    wait_idle(qtbot, task)
    assert errors == [] and "pap student nuclei" in viewer.layers


def test_a_cells_file_opens_as_planes_and_saves_back_losslessly(
    make_napari_viewer, sample, tmp_path
):
    _, cells, _ = sample
    planes = cells.swapaxes(0, 1)  # the file's order: (N, P, H, W)
    path = write_cell_planes(tmp_path / "cells.tif", planes)
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(path), plugin="napari-distill")
    assert layer.__class__.__name__ == "Labels" and layer.data.shape == cells.shape
    assert tuple(layer.axis_labels) == ("plane", "field", "y", "x")
    np.testing.assert_array_equal(layer.data, cells)
    again = tmp_path / "again.tif"
    layer.save(str(again), plugin="napari-distill")
    np.testing.assert_array_equal(read_cell_planes(again), planes)


def test_the_cells_sample_opens_ready_for_the_cells_task(make_napari_viewer):
    """File > Open Sample > Pap smear, overlapping cells painted: the task picks the painted
    layers (not the hidden truth) and counts two painted fields of four."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-distill", "pap_smear_cells")
    cells = viewer.layers["pap cells"]
    assert cells.metadata["cell_planes"] and cells.data.ndim == 4
    assert cells.data[:, 2:].max() == 0 and cells.data[:, :2].max() > 0
    np.testing.assert_array_equal(cells.data[:, :2], viewer.layers["pap cells truth"].data[:, :2])
    dock = TeacherWidget(viewer)
    dock.task_switch.set_task(CELLS)
    inputs = dock.cells_task.inputs
    assert inputs.image_picker.layer().name == "pap smear"
    assert inputs.cells_picker.layer().name == "pap cells"
    assert inputs.nuclei_picker.layer().name == "pap nuclei"
    inputs.update_summary()
    assert "2 of 4 fields painted (0, 1)" in inputs.summary.text()
