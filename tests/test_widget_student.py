"""The Student (distillation) dock widget, driven as a user would: real viewer, real workers.

A tiny teacher is trained once through the core and published as the Teacher widget does (a
prediction layer carrying the teacher, its probabilities and, as the Quality review adds it, a
slice selection).
"""

from __future__ import annotations

import dataclasses
import errno

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_distill._widgets.common import handoff as handoff_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import (
    METADATA_KEY,
    STUDENT_ROLE,
    TEACHER_ROLE,
    SourceLayer,
    add_layer_data,
    layer_data_for,
)
from napari_distill._widgets.student import inputs as student_inputs
from napari_distill._widgets.student import tasks as student_tasks
from napari_distill._widgets.student import widget as student_widget
from napari_distill._widgets.student.widget import StudentWidget
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.config import KDConfig, ModelConfig, TrainConfig
from napari_distill.core.evaluation import clean_semantic
from napari_distill.core.inference import Prediction, predict_bundle
from napari_distill.core.io import read_labels
from napari_distill.core.io import write as io_write
from napari_distill.core.models import save_checkpoint
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import Selection
from napari_distill.core.samples import make_medaka
from napari_distill.core.training import train_teacher

TIMEOUT_MS = 60_000
ACCEPTED = [2, 4, 13]  # unannotated slices of the seeded sample


@pytest.fixture(scope="module")
def sample():
    return make_medaka((16, 64, 32), n_annotated=4, seed=1)


@pytest.fixture(scope="module")
def taught(sample):
    """A teacher trained in seconds, and its prediction of the whole stack."""
    run = train_teacher(
        sample.image,
        sample.labels_sparse,
        model_config=ModelConfig(base_channels=4, depth=2),
        train_config=TrainConfig(steps=20, patch_size=32, batch_size=2, validate_every=5),
        device="cpu",
        class_names=sample.class_names,
    )
    bundle = run_to_completion(run.steps())
    prediction = run_to_completion(
        predict_bundle(bundle, sample.image, device="cpu", keep_probabilities=True)
    )
    return bundle, prediction


def selection_for(sample) -> Selection:
    assert not set(ACCEPTED) & set(sample.annotated.tolist())
    scores = np.full(sample.image.shape[0], 0.2)
    scores[ACCEPTED] = 0.9
    return Selection.from_scores(scores, tau=0.7, annotated=sample.annotated)


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    for module in (student_widget, student_inputs, workers, handoff_module):
        monkeypatch.setattr(module, "show_error", shown.append, raising=False)
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    return shown


def publish_teacher(viewer, sample, taught, selection: Selection | None):
    """Add the teacher prediction layer as the Teacher (and Quality review) widgets do."""
    bundle, prediction = taught
    source = SourceLayer.from_layer(viewer.layers["fish"])
    data = layer_data_for(prediction, source, bundle=bundle, role=TEACHER_ROLE, label="teacher")
    (layer,) = add_layer_data(viewer, data)
    if selection is not None:
        layer.metadata[METADATA_KEY]["selection"] = selection
    return layer


def open_sample(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish", scale=sample.scale, translate=(5.0, 0.0, 0.0))
    viewer.add_labels(sample.labels_sparse, name="painted", scale=sample.scale)
    return viewer


@pytest.fixture
def widget(make_napari_viewer, sample, taught):
    viewer = open_sample(make_napari_viewer, sample)
    publish_teacher(viewer, sample, taught, selection_for(sample))
    widget = StudentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget, steps=10)
    return widget


def small(widget: StudentWidget, steps: int) -> None:
    """Settings that train in seconds on 2 CPU cores."""
    fields = widget.settings.fields
    for name, value in {
        "steps": steps,
        "patch_size": 32,
        "batch_size": 2,
        "validate_every": 5,
    }.items():
        fields[("train", name)].setValue(value)


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_idle(qtbot, widget: StudentWidget) -> None:
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)


def test_inputs_follow_the_teacher_layer_and_count_the_slices(widget, sample):
    inputs = widget.inputs
    assert inputs.teacher_box.currentText() == "fish teacher"
    assert inputs.image_picker.layer().name == "fish"
    assert inputs.labels_picker.layer().name == "painted"  # predictions are not offered
    n = len(sample.annotated)
    assert (
        f"{n} annotated + {len(ACCEPTED)} accepted = {n + len(ACCEPTED)} of 16"
        in inputs.summary.text()
    )
    assert "accepted by the quality review at tau 0.70" in inputs.summary.text()
    # the model rows of the training settings are hidden: the student's shape is the teacher's
    assert widget.settings.fields[("model", "base_channels")].isHidden()
    assert widget.settings.fields[("model", "members")].isHidden()  # a student is one network
    assert widget.settings.switches[("model", "deep_supervision")].isHidden()
    assert not widget.settings.switches[("train", "augment")].isHidden()
    assert not widget.settings.fields[("train", "steps")].isHidden()
    assert not widget.settings.threads.isHidden()  # the student's runs choose theirs too
    assert not widget.settings.advanced.isExpanded()


def test_strategy_form_is_built_from_the_config_and_reaches_the_run(
    qtbot, widget, monkeypatch, errors
):
    form = widget.strategy.form
    names = [f.name for f in dataclasses.fields(KDConfig)]
    assert list(form.fields) == names
    assert form.fields["temperature"].value() == KDConfig().temperature
    assert not any(form.fields[n].isChecked() for n in names if n.endswith("_student"))
    assert "annotated slices" in form.fields["kd_on_annotated"].toolTip()
    for name in ("temperature", "lambda_kd"):  # in plain words, not the loss's formula
        tooltip = form.fields[name].toolTip()
        assert "teacher's probabilities" in tooltip or "teacher's hesitation" in tooltip
        assert "KL" not in tooltip and "cross-entropy" not in tooltip
    assert widget.strategy.name() == "kd"

    form.fields["temperature"].setValue(3.5)
    assert form.fields["kd_on_annotated"].isChecked() is False
    form.fields["kd_on_annotated"].setChecked(True)
    assert form.fields["annotated_share"].value() == KDConfig().annotated_share
    form.fields["annotated_share"].setValue(0.25)
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    assert errors == []
    expected = KDConfig(temperature=3.5, kd_on_annotated=True, annotated_share=0.25)
    assert widget.run.objective.config == expected
    saved = widget.bundle.extra["strategy_config"]
    assert saved["temperature"] == 3.5 and saved["kd_on_annotated"] is True
    assert widget.bundle.extra["accepted_slices"] == ACCEPTED
    assert "Training finished at step 10 of 10" in widget.panel.status_label.text()

    form.fields["temperature"].setValue(0.0)  # the field's bound (metadata "min") holds
    assert form.fields["temperature"].value() == pytest.approx(0.1)
    form.fields["lambda_kd"].setValue(-1.0)
    assert form.fields["lambda_kd"].value() == 0.0
    form.fields["annotated_share"].setValue(1.5)
    assert form.fields["annotated_share"].value() == 1.0

    # a value the form lets through but the config rejects
    monkeypatch.setattr(form.editors["temperature"], "read", lambda: 0.0)
    click(qtbot, widget.panel.train_button)
    assert len(errors) == 1 and errors[0].startswith("Invalid setting: the temperature")
    assert widget.panel.train_button.isEnabled() and not widget.runner.is_running


def test_stop_resume_predict_export(qtbot, widget, sample, monkeypatch, tmp_path, errors):
    small(widget, steps=100_000)
    click(qtbot, widget.panel.train_button)
    assert not widget.predict_button.isEnabled() and not widget.resume_button.isEnabled()
    qtbot.waitUntil(lambda: len(widget.panel.plot.y2) >= 2, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    run = widget.run
    stopped_at = run.step
    assert errors == [] and stopped_at < 100_000 and run.best_score is not None
    assert widget.bundle is not None and widget.bundle.extra["best_score"] == run.best_score
    assert "Training stopped" in widget.panel.status_label.text()
    assert widget.predict_button.isEnabled() and widget.resume_button.isEnabled()

    points = len(widget.panel.plot.x)
    click(qtbot, widget.resume_button)
    qtbot.waitUntil(lambda: run.step >= stopped_at + 3, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    assert widget.run is run and run.step > stopped_at  # the same run went on
    assert len(widget.panel.plot.x) > points  # and its curve too
    assert errors == []

    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    viewer = widget.viewer
    labels = viewer.layers["fish student"]
    assert labels.data.shape == sample.image.shape
    np.testing.assert_allclose(labels.scale, sample.scale)
    np.testing.assert_allclose(labels.translate, (5.0, 0.0, 0.0))
    assert labels.metadata[METADATA_KEY]["role"] == STUDENT_ROLE
    assert set(np.unique(labels.data)) <= set(widget.bundle.class_ids)

    target = tmp_path / "student labels"  # no suffix: .tif is added
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    click(qtbot, widget.export_button)
    qtbot.waitUntil(lambda: not widget.export_runner.is_running, timeout=TIMEOUT_MS)
    written = tmp_path / "student labels.tif"
    assert errors == [] and written.is_file()
    back = read_labels(written)
    np.testing.assert_array_equal(np.asarray(back.data), labels.data)
    np.testing.assert_allclose(back.scale, sample.scale)


def test_instances_and_a_full_disk(qtbot, widget, monkeypatch, tmp_path, errors):
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    box = widget.instance_class_box
    assert box.itemText(0) == "all foreground classes" and box.count() == len(
        widget.bundle.class_ids
    )
    widget.instances_box.setChecked(True)
    box.setCurrentIndex(1)
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    instances = widget.viewer.layers["fish instances"]
    assert instances.data.dtype == np.int32 and errors == []

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(io_write.tifffile, "imwrite", full_disk)
    target = tmp_path / "out.tif"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    click(qtbot, widget.export_button)
    qtbot.waitUntil(lambda: not widget.export_runner.is_running, timeout=TIMEOUT_MS)
    assert len(errors) == 1
    assert errors[0].startswith(f"Could not export the labels to {target}")
    assert "No space left on device" in errors[0]
    assert list(tmp_path.iterdir()) == []  # nothing half written
    assert widget.export_button.isEnabled()


def test_cleanup_keeps_one_piece_of_the_organs_ticked(qtbot, widget, monkeypatch, errors):
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    organ, eye = widget.bundle.class_ids[1:3]
    # A student of ten steps segments little, so the prediction is made up (what the row
    # does with it is the test; clean_semantic itself is tested in the core's tests): an
    # organ with a stray island, a pair of eyes, and a speck of the organ below the size.
    made_up = np.zeros(widget.viewer.layers["fish"].data.shape, np.uint8)
    made_up[:, 2:10, 2:10] = organ
    made_up[5, 20:23, 20:23] = organ  # 9 voxels
    made_up[:, 30:34, 2:6] = eye
    made_up[:, 30:34, 20:24] = eye

    def predicted(bundle, image, source, device, mirror):
        ids = np.asarray(bundle.class_ids)[:, None, None, None]
        one_hot = (made_up[None] == ids).astype(np.float32)
        return Prediction(one_hot, made_up.copy(), bundle.class_ids, tuple(range(len(made_up))))
        yield  # unreachable: makes this a generator, as the real one is

    monkeypatch.setattr(student_tasks, "predict_layer_image", predicted)
    row = widget.cleanup
    names = widget.bundle.class_names
    menu = [action.text() for action in row.class_menu.actions()]
    assert menu == [f"{c} {names[c]}" for c in widget.bundle.class_ids[1:]]
    assert not row.class_button.isEnabled() and row.class_button.text() == "choose organs"

    click(qtbot, widget.predict_button)  # clean-up off: the prediction as it is
    wait_idle(qtbot, widget)
    np.testing.assert_array_equal(widget.prediction_layer.data, made_up)

    row.largest_box.setChecked(True)
    row.set_chosen((organ,))  # as ticking it in the menu does
    assert row.class_button.isEnabled() and row.class_button.text() == names[organ]
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    cleaned = np.asarray(widget.prediction_layer.data)
    assert errors == [] and cleaned[5, 21, 21] == 0  # the island is gone
    assert widget.prediction_layer.name == "fish student clean"
    assert "fish student" in widget.viewer.layers  # the first one is still there
    assert (cleaned == eye).sum() == (made_up == eye).sum()  # both eyes stay

    row.min_size.setValue(10)
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget)
    np.testing.assert_array_equal(
        widget.prediction_layer.data, clean_semantic(made_up, True, 10, (organ,))
    )


def test_controls_fit_a_dock_as_narrow_as_the_teachers(make_napari_viewer):
    # The student's controls scroll vertically only: any row wider than the dock is clipped.
    # The Teacher widget sets the dock's width (it does not scroll), so the student must fit it.
    viewer = make_napari_viewer()
    teacher_width = TeacherWidget(viewer).minimumSizeHint().width()
    assert StudentWidget(viewer).content.minimumSizeHint().width() <= teacher_width


def test_no_teacher_is_a_clear_error(qtbot, make_napari_viewer, sample, errors):
    viewer = open_sample(make_napari_viewer, sample)
    widget = StudentWidget(viewer)
    assert "No teacher yet" in widget.inputs.summary.text()
    click(qtbot, widget.panel.train_button)
    assert len(errors) == 1 and errors[0].startswith("No teacher: train a teacher")
    assert not widget.runner.is_running and widget.panel.train_button.isEnabled()
    assert not widget.predict_button.isEnabled() and not widget.resume_button.isEnabled()


def test_teacher_and_scores_from_files_then_save_load_resume(
    qtbot, make_napari_viewer, sample, taught, monkeypatch, tmp_path, errors
):
    teacher_file = save_checkpoint(tmp_path / "teacher.pt", taught[0])
    scores_file = selection_for(sample).save_csv(tmp_path / "scores.csv")
    viewer = open_sample(make_napari_viewer, sample)
    widget = StudentWidget(viewer)
    small(widget, steps=100_000)
    dialog = {"open": teacher_file}
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(dialog["open"]), ""))
    click(qtbot, widget.inputs.load_teacher_button)
    assert widget.inputs.teacher_box.currentText() == "teacher.pt (file)"
    assert "0 accepted" in widget.inputs.summary.text()
    dialog["open"] = scores_file
    click(qtbot, widget.inputs.scores_button)
    assert f"{len(ACCEPTED)} accepted" in widget.inputs.summary.text()
    assert "from scores.csv" in widget.inputs.summary.text()

    click(qtbot, widget.panel.train_button)  # the teacher predicts the accepted slices first
    qtbot.waitUntil(lambda: widget.run is not None and widget.run.step >= 3, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget)
    assert errors == [] and widget.bundle.extra["accepted_slices"] == ACCEPTED
    saved_step = widget.run.step

    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "student"), "")
    )
    click(qtbot, widget.save_button)
    assert (tmp_path / "student.pt").is_file() and errors == []

    fresh = StudentWidget(viewer)
    dialog["open"] = teacher_file
    click(qtbot, fresh.inputs.load_teacher_button)
    dialog["open"] = tmp_path / "student.pt"
    click(qtbot, fresh.load_button)
    assert fresh.bundle is not None and "Loaded from student.pt" in fresh.model_label.text()
    # The kept weights' score (none yet: the run stopped before its first validation).
    kept_score = fresh.bundle.extra["best_score"]
    expected = "validation Dice" if kept_score is None else f"validation Dice {kept_score:.3f}"
    assert (expected in fresh.model_label.text()) is (kept_score is not None)
    assert fresh.predict_button.isEnabled()
    click(qtbot, fresh.resume_button)
    qtbot.waitUntil(
        lambda: fresh.run is not None and fresh.run.step >= saved_step + 2, timeout=TIMEOUT_MS
    )
    click(qtbot, fresh.panel.stop_button)
    wait_idle(qtbot, fresh)
    assert errors == [] and fresh.run.total_steps == 100_000
    assert fresh.bundle.extra["accepted_slices"] == ACCEPTED


def test_closing_the_viewer_stops_training(qtbot, widget, errors):
    small(widget, steps=100_000)
    click(qtbot, widget.panel.train_button)
    qtbot.waitUntil(lambda: len(widget.panel.plot.x) >= 3, timeout=TIMEOUT_MS)
    worker = widget.runner.worker
    widget.viewer.close()
    assert worker.done.is_set() and not widget.runner.is_running
    assert errors == []
