"""The Teacher dock widget, driven as a user would: real viewer, real workers, tiny data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QDoubleSpinBox, QFileDialog, QFormLayout, QLabel, QSpinBox

from napari_distill._widgets.common import handoff as handoff_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import (
    METADATA_KEY,
    TEACHER_ROLE,
    teacher_prediction_layers,
)
from napari_distill._widgets.teacher import widget as teacher_widget
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.config import ModelConfig
from napari_distill.core.device import cpu_count
from napari_distill.core.models.networks import ModelEnsemble, ensemble_members
from napari_distill.core.samples import make_medaka

TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def sample():
    return make_medaka((16, 64, 32), n_annotated=4, seed=1)


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    for module in (teacher_widget, workers, handoff_module):
        monkeypatch.setattr(module, "show_error", shown.append, raising=False)
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    return shown


@pytest.fixture
def widget(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish", scale=sample.scale, translate=(5.0, 0.0, 0.0))
    viewer.add_labels(
        sample.labels_sparse, name="painted", scale=sample.scale, metadata={"class_names": {}}
    )
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget, steps=20)
    return widget


def small(widget: TeacherWidget, steps: int) -> None:
    """Settings that train in seconds on 2 CPU cores."""
    fields = widget.settings.fields
    for key, value in {
        ("train", "steps"): steps,
        ("train", "patch_size"): 32,
        ("train", "batch_size"): 2,
        ("train", "validate_every"): 5,
        ("model", "base_channels"): 4,
        ("model", "depth"): 2,
    }.items():
        fields[key].setValue(value)


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_idle(qtbot, widget: TeacherWidget) -> None:
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)


def train(qtbot, widget: TeacherWidget) -> None:
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)


def test_summary_names_the_annotated_slices(widget, sample):
    text = widget.summary.text()
    assert f"{len(sample.annotated)} of 16 slices annotated" in text
    assert widget.labels_picker.layer().name == "painted"
    assert widget.settings.fields[("train", "steps")].text() == "20"
    widget.settings.fields[("train", "steps")].setValue(0)
    assert widget.settings.fields[("train", "steps")].text() == "auto"
    assert widget.settings.configs()[1].steps is None


def test_deep_supervision_is_a_switch_of_the_model(widget):
    box = widget.settings.switches[("model", "deep_supervision")]
    assert box.isChecked()  # ModelConfig's default
    box.setChecked(False)
    assert widget.settings.configs()[0].deep_supervision is False
    widget.settings.show_configs(ModelConfig(), None)  # as when a checkpoint is loaded
    assert box.isChecked()


# The choices a biologist makes stay in front; the network's and the optimiser's knobs go under
# Advanced (issue 30: "The Teacher form is jargon").
IN_FRONT = [("train", "steps"), ("train", "max_minutes"), ("model", "members")]
ADVANCED = [
    ("train", "patch_size"),
    ("train", "batch_size"),
    ("model", "base_channels"),
    ("model", "context_slices"),
    ("model", "downsample"),
    ("train", "learning_rate"),
]


def seen(qtbot, widget: TeacherWidget, box) -> bool:
    """Whether ``box`` shows once the dock scrolls to it (a collapsed section's rows are in a
    section of no height: "visible" to Qt, yet nothing of them is drawn)."""
    widget.scroll_area.ensureWidgetVisible(box)
    qtbot.wait(10)
    return box.isVisible() and not box.visibleRegion().isEmpty()


def test_the_form_shows_the_basic_choices_and_hides_the_rest_under_advanced(qtbot, widget):
    widget.viewer.window._qt_window.show()
    qtbot.wait(50)
    settings = widget.settings
    assert not settings.advanced.isExpanded()
    for key in IN_FRONT:
        assert seen(qtbot, widget, settings.fields[key]), key
    assert seen(qtbot, widget, settings.switches[("model", "views")])
    for key in ADVANCED:
        assert not seen(qtbot, widget, settings.fields[key]), key
    assert not seen(qtbot, widget, settings.threads)

    settings.advanced.expand(animate=False)
    for key in ADVANCED:
        assert seen(qtbot, widget, settings.fields[key]), key
    assert seen(qtbot, widget, settings.threads)


def test_every_advanced_setting_explains_itself_in_a_tooltip(widget):
    advanced = widget.settings.advanced
    editors = advanced.findChildren((QSpinBox, QDoubleSpinBox, QCheckBox))
    labels = [label for label in advanced.findChildren(QLabel) if label.text()]
    assert len(editors) >= len(ADVANCED) + 1 and len(labels) >= len(ADVANCED)
    for item in editors + labels:
        tooltip = item.toolTip()
        assert len(tooltip.split()) >= 8, (item.objectName() or item.text(), tooltip)
    # in plain words: no optimiser names or loss formulas
    for key in ADVANCED:
        tooltip = widget.settings.fields[key].toolTip()
        assert not any(word in tooltip for word in ("AdamW", "U-Net", "KL", "cross-entropy"))


def test_advanced_settings_and_cpu_threads_reach_the_run(qtbot, widget, errors):
    settings = widget.settings
    settings.fields[("model", "context_slices")].setValue(1)
    model_config, train_config = settings.configs()
    assert model_config.context_slices == 1 and train_config.patch_size == 32
    assert settings.threads.text() == "auto" and settings.cpu_threads() is None
    before = torch.get_num_threads()
    try:
        small(widget, steps=2)
        settings.threads.setValue(1)
        assert settings.cpu_threads() == 1
        click(qtbot, widget.panel.train_button)
        assert torch.get_num_threads() == 1
        wait_idle(qtbot, widget)
        assert errors == [] and widget.bundle.model_config.context_slices == 1
        settings.threads.setValue(0)  # automatic: every core but the GUI's
        train(qtbot, widget)
        assert torch.get_num_threads() == max(1, cpu_count() - 1)
    finally:
        torch.set_num_threads(before)


def test_train_then_predict_adds_a_labels_layer(qtbot, widget, sample, errors):
    train(qtbot, widget)
    assert errors == []
    assert widget.bundle is not None and widget.run.step == 20
    plot = widget.panel.plot
    assert len(plot.x) == 20 and len(plot.y2) >= 4  # a validation every 5 steps
    assert "Training finished" in widget.panel.status_label.text()
    assert widget.save_button.isEnabled() and widget.predict_button.isEnabled()

    widget.probabilities_box.setChecked(True)
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    viewer = widget.viewer
    labels = viewer.layers["fish teacher"]
    assert labels.data.shape == sample.image.shape
    np.testing.assert_allclose(labels.scale, sample.scale)
    np.testing.assert_allclose(labels.translate, (5.0, 0.0, 0.0))
    handoff = labels.metadata[METADATA_KEY]
    assert handoff["role"] == TEACHER_ROLE and handoff["image_layer"] == "fish"
    assert handoff["bundle"] is widget.bundle
    k = len(widget.bundle.class_ids)
    assert handoff["probabilities"].shape == (k, *sample.image.shape)
    probabilities = viewer.layers["fish teacher probs"]
    assert probabilities.data.shape == (k, *sample.image.shape)
    assert teacher_prediction_layers(viewer) == [labels]

    # predicting again never overwrites: the new layer gets a new name (here mirrored)
    widget.probabilities_box.setChecked(False)
    widget.mirror_box.setChecked(True)
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    assert viewer.layers["fish teacher"] is labels
    mirrored = viewer.layers["fish teacher [2]"]
    assert len(teacher_prediction_layers(viewer)) == 2
    mirrored_probabilities = mirrored.metadata[METADATA_KEY]["probabilities"]
    np.testing.assert_allclose(mirrored_probabilities.sum(axis=0), 1.0, atol=1e-4)
    assert not np.allclose(mirrored_probabilities, handoff["probabilities"], atol=1e-4)
    assert errors == []


def test_stop_keeps_the_best_model_so_far_and_resume_goes_on(
    qtbot, widget, monkeypatch, tmp_path, errors
):
    small(widget, steps=100_000)
    resume = widget.panel.resume_button
    assert not resume.isEnabled()  # nothing to resume yet
    click(qtbot, widget.panel.train_button)
    assert not widget.panel.train_button.isEnabled() and not widget.predict_button.isEnabled()
    qtbot.waitUntil(lambda: len(widget.panel.plot.y2) >= 2, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    assert errors == []
    run = widget.run
    assert run.step < 100_000 and run.best_score is not None
    assert widget.bundle is not None and widget.bundle.extra["best_score"] == run.best_score
    assert "Training stopped" in widget.panel.status_label.text()
    assert widget.panel.train_button.isEnabled() and widget.predict_button.isEnabled()

    stopped_at, points = run.step, len(widget.panel.plot.x)
    click(qtbot, resume)
    qtbot.waitUntil(lambda: run.step >= stopped_at + 3, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    assert widget.run is run and run.step > stopped_at  # the same run went on
    assert len(widget.panel.plot.x) > points and errors == []

    # a saved, stopped run resumes from its file in a new session
    path = tmp_path / "teacher.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.save_button)
    saved_at = run.step
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.load_button)
    assert widget.run is None and resume.isEnabled()
    click(qtbot, resume)
    qtbot.waitUntil(
        lambda: widget.run is not None and widget.run.step >= saved_at + 2, timeout=TIMEOUT_MS
    )
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    assert widget.run is not run and widget.run.total_steps == 100_000 and errors == []


def test_nothing_painted_is_a_clear_error(qtbot, make_napari_viewer, sample, errors):
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish")
    viewer.add_labels(np.zeros(sample.image.shape, dtype=np.uint8), name="empty")
    widget = TeacherWidget(viewer)
    assert "No slice is annotated" in widget.summary.text()
    click(qtbot, widget.panel.train_button)
    assert len(errors) == 1 and "Nothing is painted in 'empty'" in errors[0]
    assert not widget.runner.is_running and widget.panel.train_button.isEnabled()


def test_one_class_painted_reports_the_core_error(qtbot, make_napari_viewer, sample, errors):
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish")
    painted = np.zeros(sample.image.shape, dtype=np.uint8)
    painted[3] = 1  # a whole slice of one class: no background, nothing to tell apart
    viewer.add_labels(painted, name="one class")
    widget = TeacherWidget(viewer)
    train(qtbot, widget)
    assert len(errors) == 1 and errors[0].startswith("Teacher training failed: ")
    assert "only one class" in errors[0]
    assert widget.panel.train_button.isEnabled() and widget.bundle is None


def test_save_and_load_round_trip(qtbot, widget, monkeypatch, tmp_path, errors):
    small(widget, steps=5)
    train(qtbot, widget)
    path = tmp_path / "teacher"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.save_button)
    saved = tmp_path / "teacher.pt"
    assert saved.is_file() and errors == []

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(corrupt), ""))
    trained = widget.bundle
    click(qtbot, widget.load_button)
    assert len(errors) == 1 and "Could not load a teacher" in errors[0]
    assert widget.bundle is trained and widget.load_button.isEnabled()

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    click(qtbot, widget.load_button)
    loaded = widget.bundle
    assert loaded is not trained and loaded.class_ids == trained.class_ids
    assert widget.run is None and "Loaded from teacher.pt" in widget.model_label.text()
    for name, value in trained.model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[name], value.cpu())
    assert widget.settings.fields[("model", "base_channels")].value() == 4


def test_an_ensemble_of_teachers_trains_predicts_and_reloads(
    qtbot, widget, monkeypatch, tmp_path, errors
):
    small(widget, steps=4)
    teachers = widget.settings.fields[("model", "members")]
    assert teachers.value() == 1 and teachers.isVisibleTo(widget)  # a main setting
    labels = [form.labelForField(teachers) for form in widget.settings.findChildren(QFormLayout)]
    assert [label.text() for label in labels if label is not None] == ["Teachers (ensemble)"]
    teachers.setValue(3)
    train(qtbot, widget)
    assert errors == []
    assert isinstance(widget.bundle.model, ModelEnsemble)
    assert len(ensemble_members(widget.bundle.model)) == 3
    assert "ensemble of 3 teachers" in widget.model_label.text()
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    labels = widget.viewer.layers["fish teacher"]
    assert labels.metadata[METADATA_KEY]["bundle"] is widget.bundle

    path = tmp_path / "ensemble.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.save_button)
    teachers.setValue(1)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.load_button)
    assert isinstance(widget.bundle.model, ModelEnsemble) and teachers.value() == 3
    assert "ensemble of 3 teachers" in widget.model_label.text() and errors == []


def test_views_need_three_teachers_and_train_along_every_axis(qtbot, widget, errors):
    small(widget, steps=4)
    teachers = widget.settings.fields[("model", "members")]
    views = widget.settings.switches[("model", "views")]
    assert not views.isChecked() and views.isVisibleTo(widget)  # beside Teachers, not hidden
    views.setChecked(True)
    assert teachers.value() == 3 and teachers.minimum() == 3  # raised, cannot go below
    teachers.setValue(1)
    assert teachers.value() == 3
    train(qtbot, widget)
    assert errors == []
    assert widget.bundle.model_config.views
    assert "along the volume's three axes" in widget.model_label.text()
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    layer = widget.viewer.layers["fish teacher"]
    assert layer.data.shape == widget.viewer.layers["fish"].data.shape and errors == []
    views.setChecked(False)
    assert teachers.minimum() == 1 and teachers.value() == 3


def test_closing_the_widget_stops_training(qtbot, widget, errors):
    small(widget, steps=100_000)
    click(qtbot, widget.panel.train_button)
    qtbot.waitUntil(lambda: len(widget.panel.plot.x) >= 3, timeout=TIMEOUT_MS)
    worker = widget.runner.worker
    widget.viewer.window.remove_dock_widget(widget)
    assert worker.done.is_set() and not widget.runner.is_running
    assert errors == []
