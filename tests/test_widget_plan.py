"""The Teacher widget's plan from the data, in a real viewer: the form filled from the layers
(their scale is the spacing), the reasons shown, a field the user changed kept, and the plan
stored with the teacher."""

from __future__ import annotations

import pytest
from qtpy.QtCore import Qt

from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.samples import make_medaka

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def sample():
    return make_medaka((24, 64, 32), n_annotated=3, seed=1)


def open_widget(make_napari_viewer, sample, scale) -> TeacherWidget:
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish", scale=scale)
    viewer.add_labels(sample.labels_sparse, name="painted", scale=scale)
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return widget


def planned(qtbot, widget: TeacherWidget) -> None:
    qtbot.waitUntil(lambda: widget.plan_line.plan is not None, timeout=TIMEOUT_MS)


def test_the_plan_fills_the_form_and_says_why(make_napari_viewer, qtbot, sample):
    widget = open_widget(make_napari_viewer, sample, (1.0, 1.0, 1.0))
    planned(qtbot, widget)
    line = widget.plan_line
    assert line.text().startswith("Plan from the data: scale 1/1, views on")
    assert "views on — a volume" in line.toolTip()  # every reason in the tooltip
    assert len(line.toolTip().split("\n\n")) == len(line.plan.decisions)
    assert widget.settings.switches[("model", "views")].isChecked()
    assert widget.settings.fields[("model", "members")].value() == 3
    # the three networks hold out different slices: the run can score them against propagation
    assert widget.settings.fields[("train", "validation_fraction")].value() == 0.2


def test_thick_slices_from_the_layers_scale_turn_views_off(make_napari_viewer, qtbot, sample):
    widget = open_widget(make_napari_viewer, sample, (40.0, 1.0, 1.0))
    planned(qtbot, widget)
    assert "views off" in widget.plan_line.text()
    assert not widget.settings.switches[("model", "views")].isChecked()
    # one network and few painted slices: every painted slice trains
    assert widget.settings.fields[("train", "validation_fraction")].value() == 0.0


def test_a_changed_field_wins_and_the_plan_is_stored(make_napari_viewer, qtbot, sample):
    widget = open_widget(make_napari_viewer, sample, (1.0, 1.0, 1.0))
    planned(qtbot, widget)
    settings = widget.settings
    settings.switches[("model", "views")].setChecked(False)  # the user's choice
    settings.fields[("model", "members")].setValue(1)
    for key, value in {
        ("train", "steps"): 2,
        ("train", "patch_size"): 32,
        ("train", "batch_size"): 2,
        ("model", "base_channels"): 4,
        ("model", "depth"): 2,
    }.items():
        settings.fields[key].setValue(value)
    widget.plan_line.plan = None
    widget._update_summary()  # as painting does
    planned(qtbot, widget)
    assert "views off*" in widget.plan_line.text()
    assert not settings.switches[("model", "views")].isChecked()  # kept
    qtbot.mouseClick(widget.panel.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)
    stored = {d["setting"]: d for d in widget.bundle.extra["plan"]["decisions"]}
    assert stored["views"]["source"] == "user" and stored["views"]["value"] is False
    assert stored["validation_fraction"]["source"] == "plan"
    assert widget.bundle.model_config.members == 1
