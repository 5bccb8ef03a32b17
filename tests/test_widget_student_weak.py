# ruff: noqa: F811  (fixtures imported from test_widget_student are parameters here)
"""The Student widget with strategies ``mixed`` (a scribbles layer beside the full labels) and
``mutual``: real viewer, real workers, train then predict."""

from __future__ import annotations

import numpy as np
import pytest

from napari_distill._widgets.student.widget import StudentWidget
from napari_distill.core.samples import simulate_scribbles
from test_widget_student import (  # noqa: F401  (fixtures)
    click,
    errors,
    open_sample,
    publish_teacher,
    sample,
    selection_for,
    small,
    taught,
    wait_idle,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def widget(make_napari_viewer, sample, taught):
    viewer = open_sample(make_napari_viewer, sample)
    publish_teacher(viewer, sample, taught, selection_for(sample))
    widget = StudentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget, steps=6)
    return widget


def choose(widget: StudentWidget, name: str) -> None:
    combo = widget.strategy.combo
    combo.setCurrentIndex(combo.findData(name))


def predict(qtbot, widget: StudentWidget):
    before = len(widget.viewer.layers)
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    assert len(widget.viewer.layers) == before + 1
    return widget.viewer.layers[-1]


def test_mixed_takes_a_scribbles_layer_counts_slices_trains_and_predicts(
    qtbot,
    widget,
    sample,
    errors,
):
    inputs = widget.inputs
    assert inputs.weak.isHidden()  # kd takes no weak labels
    weak_slices = [i for i in range(16) if i not in set(sample.annotated.tolist())][1:9:2]
    scribbles = simulate_scribbles(sample.labels_full, weak_slices, length=12)
    widget.viewer.add_labels(scribbles, name="scribbles", scale=sample.scale)
    inputs.labels_picker.select(widget.viewer.layers["painted"])
    choose(widget, "mixed")
    assert not inputs.weak.isHidden()
    assert "lambda_kl" in widget.strategy.form.fields
    assert "unknown" in widget.strategy.form.fields["background_label"].toolTip()
    inputs.weak.scribbles_picker.select(widget.viewer.layers["scribbles"])
    n_full = len(sample.annotated)
    counts = inputs.weak.counts.text()
    assert f"Full masks on {n_full} slice(s); scribbles on 4, points on 0, tags on 0" in counts
    assert "weak labels only on 4 slice(s)" in counts
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    assert errors == []
    assert widget.bundle.extra["strategy"] == "mixed"
    assert widget.bundle.extra["accepted_slices"] == weak_slices
    assert widget.bundle.model_config.decoders == 2
    layer = predict(qtbot, widget)
    assert layer.data.shape == sample.labels_full.shape
    assert set(np.unique(layer.data)) <= set(widget.bundle.class_ids)


def test_mixed_without_weak_labels_says_what_to_do(qtbot, widget, errors):
    choose(widget, "mixed")
    click(qtbot, widget.panel.train_button)
    assert errors and "scribbles or of points" in errors[0]
    assert not widget.runner.is_running


def test_mutual_trains_two_networks_and_predicts_with_their_average(
    qtbot,
    widget,
    sample,
    errors,
):
    choose(widget, "mutual")
    assert widget.inputs.weak.isHidden()
    rate = widget.strategy.form.fields["noise_rate"]
    assert "share of your painted pixels is wrong" in rate.toolTip()
    rate.setValue(0.3)
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    assert errors == []
    assert widget.bundle.extra["strategy"] == "mutual"
    assert widget.bundle.extra["strategy_config"]["noise_rate"] == pytest.approx(0.3)
    assert widget.bundle.model_config.members == 2
    assert "Training finished at step 6 of 6" in widget.panel.status_label.text()
    layer = predict(qtbot, widget)
    assert layer.data.shape == sample.labels_full.shape


@pytest.mark.parametrize("name", ["mixed", "mutual"])
def test_stop_then_resume_continues_the_run_from_its_step_and_finishes(
    qtbot, widget, sample, errors, name
):
    from test_widget_student import TIMEOUT_MS

    if name == "mixed":
        weak_slices = [i for i in range(16) if i not in set(sample.annotated.tolist())][1:9:2]
        scribbles = simulate_scribbles(sample.labels_full, weak_slices, length=12)
        widget.viewer.add_labels(scribbles, name="scribbles", scale=sample.scale)
        widget.inputs.labels_picker.select(widget.viewer.layers["painted"])
    choose(widget, name)
    if name == "mixed":
        widget.inputs.weak.scribbles_picker.select(widget.viewer.layers["scribbles"])
    total = 40
    small(widget, steps=total)
    click(qtbot, widget.panel.train_button)
    qtbot.waitUntil(lambda: widget.run is not None and widget.run.step >= 2, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    run = widget.run
    stopped_at = run.step
    assert errors == [] and 2 <= stopped_at < total
    assert "Training stopped" in widget.panel.status_label.text()
    assert widget.resume_button.isEnabled()
    click(qtbot, widget.resume_button)
    wait_idle(qtbot, widget)
    assert errors == []
    assert widget.run is run and run.step == total  # the same run, from its step, to the end
    assert f"Training finished at step {total} of {total}" in widget.panel.status_label.text()
    assert widget.bundle.extra["strategy"] == name
