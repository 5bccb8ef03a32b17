# ruff: noqa: F811  (fixtures imported from test_widget_student are parameters here)
"""Slice tags in the Student widget, as a user enters them: move to a slice, *Tag this
slice...*, tick its classes; then train ``mixed``; the CSV round trip; unknown classes refused.
Real viewer, real workers."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QDialog, QFileDialog

from napari_distill._widgets.common.slices import current_slice, go_to_slice
from napari_distill._widgets.student import slice_tags
from napari_distill._widgets.student.widget import StudentWidget
from napari_distill.core.io import read_tags_csv, weak_csv_kind, write_tags_csv
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
def shown_errors(errors, monkeypatch):
    monkeypatch.setattr(slice_tags, "show_error", errors.append)
    return errors


@pytest.fixture
def widget(make_napari_viewer, sample, taught):
    """The Student widget on strategy ``mixed``, its full labels one fully painted slice."""
    viewer = open_sample(make_napari_viewer, sample)
    publish_teacher(viewer, sample, taught, selection_for(sample))
    full = np.zeros_like(sample.labels_full)
    full[FULL_SLICE] = sample.labels_full[FULL_SLICE]
    names = {"class_names": sample.class_names}
    viewer.add_labels(full, name="one slice", scale=sample.scale, metadata=names)
    widget = StudentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget, steps=6)
    widget.inputs.labels_picker.select(viewer.layers["one slice"])
    combo = widget.strategy.combo
    combo.setCurrentIndex(combo.findData("mixed"))
    # tags only: the sparse labels "painted" are no scribbles (the picker offers them first)
    widget.inputs.weak.scribbles_picker.setCurrentIndex(0)
    assert widget.inputs.weak.scribbles() is None
    return widget


FULL_SLICE = 7  # shows the organs of the tagged slices in the seeded sample (checked below)
TAGGED = (5, 12)


def answer_dialog(monkeypatch, ticked: dict[int, set[int]]) -> list[int]:
    """Make the tag dialog tick ``ticked[slice]`` and press OK; return the slices asked."""
    asked: list[int] = []

    def exec_(dialog):
        index = int(dialog.windowTitle().split()[-1])
        asked.append(index)
        for row in range(dialog.list.count()):
            dialog.list.item(row).setCheckState(slice_tags.Qt.CheckState.Unchecked)
        for class_id in ticked[index]:
            dialog.item(class_id).setCheckState(slice_tags.Qt.CheckState.Checked)
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(slice_tags.TagDialog, "exec_", exec_)
    return asked


def present(sample, index: int) -> set[int]:
    return {int(c) for c in np.unique(sample.labels_full[index]) if c != 0}


def tag_slices(qtbot, widget, monkeypatch, sample) -> dict[int, set[int]]:
    panel = widget.inputs.weak.tags_panel
    layer = widget.viewer.layers["one slice"]
    ticked = {index: present(sample, index) for index in TAGGED}
    asked = answer_dialog(monkeypatch, ticked)
    for index in TAGGED:
        go_to_slice(widget.viewer, layer, index)
        assert current_slice(widget.viewer, layer) == index
        click(qtbot, panel.tag_button)
    assert asked == list(TAGGED)
    return ticked


def test_tag_two_slices_then_train_mixed_on_tags_and_one_full_slice(
    qtbot, widget, sample, shown_errors, monkeypatch
):
    panel = widget.inputs.weak.tags_panel
    assert not panel.isHidden()
    assert set(panel.classes()) == present(sample, FULL_SLICE)
    assert all(
        present(sample, i) and present(sample, i) <= present(sample, FULL_SLICE) for i in TAGGED
    )
    ticked = tag_slices(qtbot, widget, monkeypatch, sample)
    assert panel.tags == {i: tuple(sorted(ticked[i])) for i in TAGGED}
    assert panel.table.rowCount() == 2
    assert [panel.table.item(r, 0).text() for r in range(2)] == [str(i) for i in TAGGED]
    names = sample.class_names
    first = sorted(ticked[TAGGED[0]])[0]
    assert f"{first} {names[first]}" in panel.table.item(0, 1).text()
    counts = widget.inputs.weak.counts.text()
    assert "Full masks on 1 slice(s); scribbles on 0, points on 0, tags on 2" in counts
    assert "weak labels only on 2 slice(s)" in counts

    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget)
    assert shown_errors == []
    assert widget.bundle.extra["strategy"] == "mixed"
    assert widget.bundle.model_config.decoders == 2
    tags = widget.run.objective.tags  # the tags reached the strategy, as the CLI's do
    assert tags is not None and tags.slice_indices == TAGGED
    assert "Training finished at step 6 of 6" in widget.panel.status_label.text()


def test_retagging_a_slice_shows_its_tag_and_remove_forgets_it(
    qtbot, widget, sample, shown_errors, monkeypatch
):
    panel = widget.inputs.weak.tags_panel
    tag_slices(qtbot, widget, monkeypatch, sample)
    seen: list[tuple[int, ...]] = []
    monkeypatch.setattr(
        slice_tags.TagDialog,
        "exec_",
        lambda dialog: seen.append(dialog.chosen()) or QDialog.DialogCode.Rejected,
    )
    go_to_slice(widget.viewer, widget.viewer.layers["one slice"], TAGGED[1])
    click(qtbot, panel.tag_button)
    assert seen == [panel.tags[TAGGED[1]]]  # ticked as tagged before; Cancel changes nothing
    panel.table.selectRow(0)
    click(qtbot, panel.remove_button)
    assert list(panel.tags) == [TAGGED[1]] and panel.table.rowCount() == 1
    assert "tags on 1" in widget.inputs.weak.counts.text()
    assert shown_errors == []


def test_tags_csv_saved_from_the_dock_is_the_cli_format_and_loads_back(
    qtbot, widget, sample, shown_errors, monkeypatch, tmp_path
):
    panel = widget.inputs.weak.tags_panel
    ticked = tag_slices(qtbot, widget, monkeypatch, sample)
    target = tmp_path / "my tags"  # no suffix: .csv is added
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    click(qtbot, panel.save_button)
    saved = tmp_path / "my tags.csv"
    assert weak_csv_kind(saved) == "tags"  # what the CLI's --weak-labels tells apart
    assert read_tags_csv(saved) == {i: tuple(sorted(ticked[i])) for i in TAGGED}

    panel.table.selectAll()
    click(qtbot, panel.remove_button)
    assert panel.tags == {} and not panel.save_button.isEnabled()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(saved), ""))
    click(qtbot, panel.load_button)
    assert panel.tags == read_tags_csv(saved)
    assert panel.table.rowCount() == 2
    assert "tags on 2" in widget.inputs.weak.counts.text()
    assert shown_errors == []


def test_a_tag_naming_a_class_the_labels_do_not_have_is_refused(
    qtbot, widget, sample, shown_errors, monkeypatch, tmp_path
):
    panel = widget.inputs.weak.tags_panel
    tag_slices(qtbot, widget, monkeypatch, sample)
    before = dict(panel.tags)
    bad = write_tags_csv(tmp_path / "bad.csv", {3: (1, 99)})
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    click(qtbot, panel.load_button)
    assert len(shown_errors) == 1
    assert "class(es) 99" in shown_errors[0] and "'one slice' do not have" in shown_errors[0]
    assert "Nothing was loaded" in shown_errors[0]
    assert panel.tags == before  # nothing lost

    # the labels lose a tagged class after tagging: training refuses, and says why
    layer = widget.viewer.layers["one slice"]
    gone = sorted(panel.tags[TAGGED[0]])[-1]
    data = np.array(layer.data)
    data[data == gone] = 0
    layer.data = data
    click(qtbot, widget.panel.train_button)
    assert len(shown_errors) == 2 and f"class(es) {gone}" in shown_errors[1]
    assert not widget.runner.is_running


def test_tagging_before_any_class_is_painted_says_what_to_do(
    qtbot, widget, shown_errors, monkeypatch
):
    layer = widget.viewer.layers["one slice"]
    layer.data = np.zeros_like(layer.data)
    monkeypatch.setattr(slice_tags.TagDialog, "exec_", lambda dialog: pytest.fail("no dialog"))
    click(qtbot, widget.inputs.weak.tags_panel.tag_button)
    assert shown_errors and "Paint the full labels first" in shown_errors[0]
