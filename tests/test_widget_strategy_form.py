"""The Student's strategy form: the student's size and where it starts stay consistent."""

from __future__ import annotations

from napari_distill._widgets.student.strategy_form import RESIZED_TIP, StrategyPicker
from napari_distill.core.config import KDConfig
from napari_distill.core.strategies import STRATEGIES


def test_smaller_and_larger_exclude_each_other_and_start_from_scratch(qtbot):
    picker = StrategyPicker(STRATEGIES)
    qtbot.addWidget(picker)
    fields = picker.form.fields
    smaller, larger, start = (
        fields["smaller_student"], fields["larger_student"], fields["init_from_teacher"]
    )  # fmt: skip
    assert start.isChecked() and start.isEnabled()

    larger.setChecked(True)
    assert not start.isChecked() and not start.isEnabled()
    assert start.toolTip() == RESIZED_TIP
    assert picker.form.config() == KDConfig(larger_student=True, init_from_teacher=False)
    smaller.setChecked(True)  # the other size: larger goes off, start stays off
    assert not larger.isChecked() and not start.isChecked() and not start.isEnabled()
    smaller.setChecked(False)  # the teacher's size again: start as the user had it
    assert start.isChecked() and start.isEnabled() and start.toolTip() != RESIZED_TIP

    start.setChecked(False)  # the user's own choice survives a detour through a size
    larger.setChecked(True)
    larger.setChecked(False)
    assert not start.isChecked() and start.isEnabled()
    assert picker.form.config() == KDConfig(init_from_teacher=False)


def test_a_saved_larger_student_shows_its_settings_consistently(qtbot):
    picker = StrategyPicker(STRATEGIES)
    qtbot.addWidget(picker)
    saved = KDConfig(larger_student=True, noisy_student=True, init_from_teacher=False)
    picker.show_saved("kd", {"larger_student": True, "noisy_student": True,
                             "init_from_teacher": False})  # fmt: skip
    assert picker.form.config() == saved
    assert not picker.form.fields["init_from_teacher"].isEnabled()
    picker.combo.setCurrentIndex(picker.combo.findData("mutual"))  # other forms: untouched
    assert "larger_student" not in picker.form.fields
