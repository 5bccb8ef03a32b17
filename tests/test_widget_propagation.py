"""The Teacher widget's Propagation box in a real viewer: real workers, real layers (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_distill._widgets.common import handoff as handoff_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import METADATA_KEY
from napari_distill._widgets.teacher import propagation_panel
from napari_distill._widgets.teacher.propagation_panel import PROPAGATION_ROLE
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.samples import make_medaka

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def sample():
    return make_medaka((16, 64, 32), n_annotated=4, seed=1)


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    for module in (propagation_panel, workers, handoff_module):
        monkeypatch.setattr(module, "show_error", shown.append, raising=False)
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    return shown


@pytest.fixture
def widget(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish", scale=sample.scale)
    viewer.add_labels(sample.labels_sparse, name="painted", scale=sample.scale)
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    fields = widget.settings.fields
    for key, value in {
        ("train", "steps"): 4, ("train", "patch_size"): 32, ("train", "batch_size"): 2,
        ("train", "validate_every"): 2, ("model", "base_channels"): 4, ("model", "depth"): 2,
    }.items():  # fmt: skip
        fields[key].setValue(value)
    return widget


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_idle(qtbot, widget: TeacherWidget) -> None:
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)


def test_propagate_adds_a_new_labels_layer_and_never_replaces_one(qtbot, widget, sample, errors):
    box = widget.propagation
    assert not box.compare_button.isEnabled()  # no teacher yet
    box.method_box.setCurrentText("nearest")
    click(qtbot, box.propagate_button)
    wait_idle(qtbot, widget)
    layer = widget.viewer.layers["fish nearest propagated"]
    painted = [int(i) for i in sample.annotated]
    np.testing.assert_array_equal(layer.data[painted], sample.labels_sparse[painted])
    assert (layer.data[[i for i in range(16) if i not in painted]] > 0).any()  # filled
    handoff = layer.metadata[METADATA_KEY]
    assert handoff["role"] == PROPAGATION_ROLE and handoff["method"] == "nearest"
    np.testing.assert_allclose(layer.scale, sample.scale)
    layer.data[0] = 7  # the user edits it; propagating again must leave it alone
    box.method_box.setCurrentText("flow")
    click(qtbot, box.propagate_button)
    wait_idle(qtbot, widget)
    assert (widget.viewer.layers["fish nearest propagated"].data[0] == 7).all()
    assert "fish flow propagated" in widget.viewer.layers and errors == []


def test_three_teachers_are_compared_with_propagation_after_training(qtbot, widget, errors):
    qtbot.waitUntil(lambda: widget.plan_line.plan is not None, timeout=60_000)
    widget.settings.switches[("model", "views")].setChecked(False)  # three along one axis
    widget.settings.fields[("model", "members")].setValue(3)
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)  # training, then the comparison it starts (flow: quick here)
    comparison = widget.propagation.comparison
    assert errors == [] and comparison is not None and comparison.fair
    assert comparison.method == "flow" and len(comparison.held_out) >= 2  # members held apart
    text = widget.propagation.result_label.text()
    assert "teacher never trained on" in text and "<table" in text
    for row in comparison.rows():
        assert f"<td>{row['name']}</td>" in text and f"<td>{row['used']}</td>" in text
    assert widget.predict_button.isEnabled() and widget.propagation.compare_button.isEnabled()


def test_a_teacher_without_held_out_slices_says_how_to_compare(qtbot, widget, errors):
    qtbot.waitUntil(lambda: widget.plan_line.plan is not None, timeout=60_000)
    widget.settings.fields[("train", "validation_fraction")].setValue(0.0)
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    assert "No fair comparison" in widget.propagation.result_label.text()
    widget.propagation.method_box.setCurrentText("nearest")
    click(qtbot, widget.propagation.compare_button)  # by hand: the same answer
    wait_idle(qtbot, widget)
    assert "3 teachers" in widget.propagation.result_label.text() and errors == []
