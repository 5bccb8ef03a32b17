"""*Export for bioimage.io...* beside *Save model...*: a real viewer, a real worker, a teacher
trained a few steps; the file dialog and the replace question answered by the test."""

from __future__ import annotations

import socket

import pytest
from qtpy.QtWidgets import QFileDialog, QMessageBox

import test_widget_teacher as teacher_tests
from napari_distill._widgets.common import export_model
from napari_distill._widgets.student.widget import StudentWidget
from test_widget_teacher import click, small, train, wait_idle

# the Teacher widget's fixtures: a viewer with a tiny Medaka sample, the errors shown
sample, widget, errors = teacher_tests.sample, teacher_tests.widget, teacher_tests.errors

spec = pytest.importorskip("bioimageio.spec")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise OSError("the network is off in these tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(spec.settings, "cache_path", tmp_path / "bioimageio-cache")


def test_the_teacher_exports_a_valid_package_and_asks_before_replacing(
    qtbot,
    widget,
    monkeypatch,
    tmp_path,
    errors,
):
    button = widget.export_model_button
    assert not button.isEnabled()  # no model yet
    monkeypatch.setattr(export_model, "show_error", errors.append)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "t"), ""))
    small(widget, steps=3)
    train(qtbot, widget)  # the plan gives this volume a views teacher: refused, saying why
    assert widget.bundle.model_config.views
    click(qtbot, button)
    assert len(errors) == 1 and "three axes" in errors.pop()
    assert not (tmp_path / "t.zip").exists()

    widget.settings.switches[("model", "views")].setChecked(False)
    widget.settings.fields[("model", "members")].setValue(1)
    small(widget, steps=5)
    train(qtbot, widget)
    assert button.isEnabled() and errors == []
    shown = []
    monkeypatch.setattr(export_model, "show_info", shown.append)
    click(qtbot, button)
    wait_idle(qtbot, widget)
    package = tmp_path / "t.zip"
    assert errors == [] and package.is_file(), errors
    assert shown == ["Exported t.zip (bioimage.io)"]
    model = spec.load_description(package, perform_io_checks=True)
    assert model.validation_summary.status == "valid-format", model.validation_summary
    assert button.isEnabled()

    written = package.stat().st_mtime_ns
    asked = []

    def answer(reply):
        def question(*args, **kwargs):
            asked.append(args[2])
            return reply

        return question

    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    click(qtbot, button)
    wait_idle(qtbot, widget)
    assert asked == ["t.zip already exists. Replace it?"]
    assert package.stat().st_mtime_ns == written  # kept
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    click(qtbot, button)
    wait_idle(qtbot, widget)
    assert package.stat().st_mtime_ns != written and errors == []


def test_the_student_has_the_button_beside_save_model(make_napari_viewer):
    viewer = make_napari_viewer()
    student = StudentWidget(viewer)
    viewer.window.add_dock_widget(student)
    button = student.export_model_button
    assert button.text() == "Export for bioimage.io..." and not button.isEnabled()
    assert button.parentWidget() is student.save_button.parentWidget()
