"""The whole method through the GUI, as a user would do it: the issue's proof that the loop closes.

Open a (small) CT stack and its sparse annotations from TIFF files with the plugin's reader,
dock the Teacher, Quality review and Student widgets from the plugin menu's manifest entries,
train and predict a teacher, score its slices and click through the review, distil a student,
predict, and export its labels to a TIFF that reads back equal.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_distill._widgets.common import handoff as handoff_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import METADATA_KEY, STUDENT_ROLE
from napari_distill._widgets.quality import widget as quality_widget
from napari_distill._widgets.student import widget as student_widget
from napari_distill._widgets.teacher import widget as teacher_widget
from napari_distill.core.io import read_labels, write_image, write_labels
from napari_distill.core.samples import make_medaka

TIMEOUT_MS = 90_000
PLUGIN = "napari-distill"


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    for module in (teacher_widget, quality_widget, student_widget, workers, handoff_module):
        monkeypatch.setattr(module, "show_error", shown.append, raising=False)
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    return shown


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def run(qtbot, widget, button) -> None:
    """Press ``button`` and wait for the widget's worker to finish."""
    click(qtbot, button)
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)


def test_teacher_quality_student_export(qtbot, make_napari_viewer, tmp_path, monkeypatch, errors):
    sample = make_medaka((16, 64, 32), n_annotated=4, seed=1)
    write_image(tmp_path / "fish.tif", sample.image, sample.scale, unit="micrometer")
    write_labels(tmp_path / "painted.tif", sample.labels_sparse, sample.scale, unit="micrometer")

    viewer = make_napari_viewer()
    viewer.open(tmp_path / "fish.tif", plugin=PLUGIN)
    viewer.open(tmp_path / "painted.tif", plugin=PLUGIN)
    assert [layer.name for layer in viewer.layers] == ["fish", "painted"]
    _, teacher_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Teacher")
    _, quality_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Quality review")
    _, student_widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Student (distillation)")

    # 1. the teacher learns the painted slices and predicts the stack
    assert "4 of 16 slices annotated" in teacher_widget.summary.text()
    for key, value in {
        ("train", "steps"): 20,
        ("train", "patch_size"): 32,
        ("train", "batch_size"): 2,
        ("train", "validate_every"): 5,
        ("model", "base_channels"): 4,
        ("model", "depth"): 2,
    }.items():
        teacher_widget.settings.fields[key].setValue(value)
    run(qtbot, teacher_widget, teacher_widget.panel.train_button)
    run(qtbot, teacher_widget, teacher_widget.predict_button)
    teacher_layer = viewer.layers["fish teacher"]
    assert errors == []

    # 2. the quality classifier scores every slice; a click in the table moves the viewer
    assert quality_widget.teacher_picker.layer().name == teacher_layer.name
    for name, value in {"steps": 4, "variants_per_slice": 1, "input_size": 32}.items():
        quality_widget.fitting.settings.fields[name].setValue(value)
    run(qtbot, quality_widget, quality_widget.fitting.panel.train_button)
    run(qtbot, quality_widget, quality_widget.score_button)
    selection = quality_widget.review.selection
    assert errors == [] and sorted(selection.scores) == list(range(16))
    assert teacher_layer.metadata[METADATA_KEY]["selection"] == selection
    table = quality_widget.review.table
    target = next(i for i in range(16) if i != viewer.dims.current_step[0])
    rect = table.visualRect(table.model().index(table.row_of(target), 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewer.dims.current_step[0] == target
    quality_widget.review.tau_slider.setValue(0.0)  # accept every scored slice
    accepted = sorted(set(range(16)) - set(sample.annotated.tolist()))
    assert selection.accepted_slices == accepted

    # 3. the student distils the teacher on annotated + accepted slices and predicts
    inputs = student_widget.inputs
    inputs.update_summary()  # what entering the widget with the mouse does
    assert inputs.teacher_box.currentText() == "fish teacher"
    assert "4 annotated + 12 accepted = 16 of 16" in inputs.summary.text()
    small = {"steps": 10, "patch_size": 32, "batch_size": 2, "validate_every": 5}
    for name, value in small.items():
        student_widget.settings.fields[("train", name)].setValue(value)
    run(qtbot, student_widget, student_widget.panel.train_button)
    assert errors == [] and student_widget.bundle.extra["accepted_slices"] == accepted
    assert len(student_widget.panel.plot.x) == 10
    run(qtbot, student_widget, student_widget.predict_button)
    labels = viewer.layers["fish student"]
    assert labels.metadata[METADATA_KEY]["role"] == STUDENT_ROLE
    assert labels.data.shape == sample.image.shape
    np.testing.assert_allclose(labels.scale, sample.scale)

    # 4. the student's labels go to a TIFF that reads back equal, scale included
    path = tmp_path / "student.tif"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, student_widget.export_button)
    qtbot.waitUntil(lambda: not student_widget.export_runner.is_running, timeout=TIMEOUT_MS)
    assert errors == [] and path.is_file()
    back = read_labels(path)
    np.testing.assert_array_equal(np.asarray(back.data), labels.data)
    np.testing.assert_allclose(back.scale, sample.scale)
