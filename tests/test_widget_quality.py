"""The Quality review dock widget, driven as a user would: real viewer, real workers, tiny data.

A tiny teacher is trained once through the core and its prediction put in the viewer the way
the Teacher widget does (``handoff.layer_data_for``); the widget then fits the quality
classifier, scores the slices and edits the selection.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from matplotlib.backend_bases import MouseEvent
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QApplication, QFileDialog

from napari_distill._widgets.common import handoff as handoff_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import (
    TEACHER_ROLE,
    SourceLayer,
    handoff,
    layer_data_for,
)
from napari_distill._widgets.quality import fit_tab, review_tab
from napari_distill._widgets.quality import widget as quality_widget
from napari_distill._widgets.quality.score_table import COLUMNS, REJECTED, TINTS
from napari_distill._widgets.quality.widget import SELECTION_KEY, QualityWidget
from napari_distill.core.config import ModelConfig, QualityConfig, TrainConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import save_checkpoint
from napari_distill.core.quality import Selection, fit_quality
from napari_distill.core.samples import make_medaka
from napari_distill.core.training import train_teacher

TIMEOUT_MS = 60_000
TRANSLATE = (5.0, 0.0, 0.0)


def drain(generator):
    """Iterate a core generator to its end; its return value."""
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


@pytest.fixture(scope="module")
def sample():
    return make_medaka((16, 64, 32), n_annotated=4, seed=1)


@pytest.fixture(scope="module")
def teacher(sample):
    """A barely trained teacher and its prediction with probabilities (made once)."""
    run = train_teacher(
        sample.image,
        sample.labels_sparse,
        model_config=ModelConfig(base_channels=8, depth=2),
        train_config=TrainConfig(steps=3, patch_size=32, batch_size=2, validate_every=3),
        device="cpu",
    )
    bundle = drain(run.steps())
    prediction = drain(predict_bundle(bundle, sample.image, device="cpu", keep_probabilities=True))
    return bundle, prediction


@pytest.fixture(scope="module")
def fitted(sample, teacher):
    """A quality classifier fitted through the core (for the tests that only review)."""
    config = QualityConfig(steps=3, variants_per_slice=1, input_size=32, batch_size=4)
    return drain(fit_quality(teacher[0], sample.image, sample.labels_sparse, config=config))


@pytest.fixture
def notes(monkeypatch):
    """Notifications shown, as ``(kind, message)``."""
    shown: list[tuple[str, str]] = []
    for kind in ("error", "warning", "info"):
        record = lambda message, kind=kind: shown.append((kind, str(message)))  # noqa: E731
        for module in (quality_widget, fit_tab, review_tab, workers, handoff_module):
            monkeypatch.setattr(module, f"show_{kind}", record, raising=False)
        monkeypatch.setattr(f"napari.utils.notifications.show_{kind}", record)
    return shown


def errors(notes) -> list[str]:
    return [message for kind, message in notes if kind == "error"]


def add_teacher_layer(viewer, teacher, with_probabilities=False):
    bundle, prediction = teacher
    source = SourceLayer.from_layer(viewer.layers["fish"])
    data = layer_data_for(
        prediction, source, bundle=bundle, role=TEACHER_ROLE, label="teacher",
        with_probabilities=with_probabilities,
    )  # fmt: skip
    return handoff_module.add_layer_data(viewer, data)[0]


@pytest.fixture
def viewer(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    viewer.add_image(sample.image, name="fish", scale=sample.scale, translate=TRANSLATE)
    viewer.add_labels(sample.labels_sparse, name="painted", scale=sample.scale, translate=TRANSLATE)
    return viewer


@pytest.fixture
def widget(viewer, teacher):
    add_teacher_layer(viewer, teacher)
    widget = QualityWidget(viewer)
    viewer.window.add_dock_widget(widget)
    for name, value in {"steps": 4, "variants_per_slice": 1, "input_size": 32}.items():
        widget.fitting.settings.fields[name].setValue(value)
    return widget


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_idle(qtbot, widget: QualityWidget) -> None:
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)


def score(qtbot, widget: QualityWidget, model=None) -> Selection:
    if model is not None:
        widget.fitting.set_model(model)
    click(qtbot, widget.score_button)
    wait_idle(qtbot, widget)
    assert widget.review.selection is not None
    return widget.review.selection


def test_fit_then_score_fills_the_plot_and_the_table(qtbot, widget, sample, notes):
    assert widget.image_picker.layer().name == "fish"
    assert widget.labels_picker.layer().name == "painted"
    teacher_layer = widget.teacher_picker.layer()
    assert teacher_layer.name == "fish teacher"
    assert "4 annotated slice(s)" in widget.summary.text()
    assert not widget.score_button.isEnabled()  # nothing to score with yet
    # hints in place of empty axes until there is something to plot
    assert widget.fitting.panel.plot.view.hint.isVisibleTo(widget)
    assert not widget.fitting.panel.plot.canvas.isVisibleTo(widget)
    assert "once you press Score slices" in widget.review.plot.view.hint.text()
    assert not widget.review.plot.view.showing_canvas

    click(qtbot, widget.fitting.panel.train_button)
    wait_idle(qtbot, widget)
    assert errors(notes) == []
    model = widget.fitting.quality
    assert model is not None and model.step == 4
    assert "held-out check" in widget.fitting.model_label.text()
    if not math.isnan(model.report.spearman):
        assert f"Spearman {model.report.spearman:.2f}" in widget.fitting.model_label.text()
    assert widget.fitting.save_button.isEnabled()
    assert len(widget.fitting.panel.plot.x) == 4  # the loss curve
    assert widget.fitting.panel.plot.view.showing_canvas

    selection = score(qtbot, widget)
    assert errors(notes) == []
    assert widget.tabs.currentIndex() == 1  # the review is shown
    assert sorted(selection.scores) == list(range(16))
    assert selection.annotated == set(sample.annotated.tolist())
    assert all(0.0 <= s <= 1.0 for s in selection.scores.values())
    # published for the Student widget: the live object in the teacher layer's hand-off
    assert handoff(teacher_layer)[SELECTION_KEY] is selection

    table = widget.review.table
    assert table.model().rowCount() == 16
    # sorted as Rank by says (the teacher's confidence by default), least sure first
    assert widget.review.ranking() == "confidence"
    sure = [float(table.model().index(row, 2).data()) for row in range(16)]
    assert sure == sorted(sure)
    plot = widget.review.plot
    drawn = sum(len(plot.points(status)[0]) for status in ("accepted", "rejected", "annotated"))
    assert drawn == 16 and plot.view.showing_canvas
    assert plot.axes.get_xlabel() == "slice" and plot.axes.get_ylabel() == "predicted IoU"
    assert plot.tau == pytest.approx(QualityConfig().tau)
    # after scoring the viewer shows the worst slice, marked in the plot and the table
    worst = widget.review.worst_first()[0]
    assert widget.viewer.dims.current_step[0] == worst
    assert widget.review.current() == worst
    assert table.slice_at(table.currentIndex().row()) == worst

    # clicking the score header sorts by score, a second click the other way
    header = table.horizontalHeader()
    middle = QPoint(header.sectionViewportPosition(1) + 5, header.height() // 2)
    orders = []
    for _ in range(2):
        qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton, pos=middle)
        orders.append([float(table.model().index(row, 1).data()) for row in range(16)])
    assert sorted(orders[0]) in orders and sorted(orders[0], reverse=True) in orders


def test_table_row_and_plot_click_move_the_viewer(qtbot, viewer, teacher, fitted, notes):
    # a 4D probability layer adds a leading axis: slices are then world axis 1
    add_teacher_layer(viewer, teacher, with_probabilities=True)
    widget = QualityWidget(viewer)
    viewer.window.add_dock_widget(widget)
    score(qtbot, widget, fitted)
    axis = viewer.dims.ndim - 3
    assert axis == 1

    table = widget.review.table
    row = table.row_of(12)
    rect = table.visualRect(table.model().index(row, 0))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewer.dims.current_step[axis] == 12
    assert widget.review.current() == 12

    plot = widget.review.plot
    plot.canvas.draw()
    x, y = plot.axes.transData.transform((3.2, 0.5))
    plot.on_press(MouseEvent("button_press_event", plot.canvas, x, y, button=1))
    assert viewer.dims.current_step[axis] == 3
    assert plot._current_line.get_xdata()[0] == 3
    assert table.slice_at(table.currentIndex().row()) == 3  # the table follows the viewer

    viewer.dims.set_current_step(axis, 7)  # moving the viewer moves the marks
    assert widget.review.current() == 7
    assert plot._current_line.get_xdata()[0] == 7
    assert errors(notes) == []


def test_the_slice_line_follows_the_viewer_without_a_full_draw(qtbot, monkeypatch):
    """Scrolling the viewer moves the plot's slice line at every step: blitted over the last
    full draw, never a whole figure drawn on the GUI thread."""
    from matplotlib.figure import Figure

    from napari_distill._widgets.quality.score_plot import ScorePlot

    rng = np.random.default_rng(0)
    plot = ScorePlot()
    qtbot.addWidget(plot)
    plot.resize(360, 260)
    plot.show()
    plot.set_selection(Selection.from_scores({i: float(rng.random()) for i in range(40)}))
    qtbot.waitExposed(plot)
    plot.canvas.draw()
    QApplication.processEvents()  # the draws the showing asked for
    draws = []
    real_draw = Figure.draw
    monkeypatch.setattr(
        Figure, "draw", lambda fig, renderer: draws.append(1) or real_draw(fig, renderer)
    )

    def column(index):
        x, _ = plot.axes.transData.transform((index, 0.5))
        pixels = np.asarray(plot.canvas.buffer_rgba())[:, int(round(x)), :3]
        return pixels[len(pixels) // 4 : 3 * len(pixels) // 4].astype(int)

    empty, empty_30 = column(20), column(30)
    plot.set_current(20)
    QApplication.processEvents()
    drawn = column(20)
    assert (np.abs(drawn - empty).sum(axis=1) > 60).mean() > 0.8  # the line, top to bottom
    plot.set_current(30)
    QApplication.processEvents()
    np.testing.assert_array_equal(column(20), empty)  # moved: the old one erased
    assert (np.abs(column(30) - empty_30).sum(axis=1) > 60).mean() > 0.8
    assert draws == []
    plot.set_current(None)
    QApplication.processEvents()
    np.testing.assert_array_equal(column(30), empty_30)


def test_threshold_and_keyboard_decisions(qtbot, widget, fitted, notes):
    selection = score(qtbot, widget, fitted)
    review = widget.review
    unannotated = set(range(16)) - selection.annotated
    review.tau_slider.setValue(0.0)
    assert selection.tau == 0.0 and selection.accepted == unannotated
    review.tau_slider.setValue(1.0)
    assert selection.accepted == {i for i in unannotated if selection.scores[i] >= 1.0}
    assert "0 accepted" in review.counts.text() or selection.accepted
    review.tau_slider.setValue(0.0)

    widget.viewer.window._qt_window.show()
    order = review.worst_first()
    review.go_to(order[0])
    review.table.setFocus()
    widget.window().activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is review.table, timeout=5000)

    qtbot.keyClick(review.table, Qt.Key.Key_R)
    assert order[0] not in selection.accepted and selection.overrides == {order[0]: False}
    row = review.table.row_of(order[0])
    status = review.table.model().index(row, COLUMNS.index("status"))
    assert status.data() == "rejected (by hand)"
    assert status.data(Qt.ItemDataRole.BackgroundRole).color() == TINTS[REJECTED]
    assert order[0] in review.plot.points(REJECTED)[0]
    assert "1 decided by hand" in review.counts.text()

    review.tau_slider.setValue(0.1)  # a new threshold keeps the decision by hand
    assert order[0] not in selection.accepted

    qtbot.keyClick(review.table, Qt.Key.Key_N)  # next worst
    assert review.current() == order[1]
    review.tau_slider.setValue(1.0)
    qtbot.keyClick(review.table, Qt.Key.Key_A)
    assert order[1] in selection.accepted and selection.overrides[order[1]] is True
    click(qtbot, review.buttons["reset"])
    assert order[1] not in selection.overrides

    annotated = min(selection.annotated)  # annotated slices cannot be decided on
    review.go_to(annotated)
    click(qtbot, review.buttons["accept"])
    assert annotated not in selection.accepted
    assert any(kind == "warning" and "annotated" in m for kind, m in notes)
    click(qtbot, review.buttons["worst"])
    assert review.current() == order[0]
    assert errors(notes) == []


def test_rank_by_the_teachers_confidence(qtbot, widget, fitted, notes, tmp_path, monkeypatch):
    selection = score(qtbot, widget, fitted)
    review = widget.review
    unannotated = set(range(16)) - selection.annotated
    assert set(selection.confidence) == set(range(16))  # scoring measured it on every slice
    table = review.table
    column = COLUMNS.index("confidence")
    for row in range(16):
        shown = table.model().index(row, column).data()
        assert float(shown) == pytest.approx(selection.confidence[table.slice_at(row)], abs=5e-4)

    dots = review.plot._confidence  # drawn over the scores, unannotated slices only
    assert list(dots.get_xdata()) == sorted(unannotated)
    assert list(dots.get_ydata()) == [selection.confidence[i] for i in sorted(unannotated)]

    assert review.ranking() == "confidence"  # the default: it ranks empty slices too
    order = review.worst_first()
    assert set(order) == unannotated
    assert [selection.confidence[i] for i in order] == sorted(
        selection.confidence[i] for i in order
    )
    click(qtbot, review.buttons["worst"])
    assert review.current() == order[0]
    click(qtbot, review.buttons["next"])
    assert review.current() == order[1]
    review.rank_by.setCurrentIndex(review.rank_by.findData("score"))
    assert review.worst_first() == selection.worst_first("score")
    scores = [float(table.model().index(row, 1).data() or "inf") for row in range(16)]
    assert scores == sorted(scores)  # the table follows Rank by

    # A selection saved before the confidence existed: ranking by it says what to do.
    old = tmp_path / "old.csv"
    old.write_text(
        "slice,score,accepted,overridden\n" + "".join(f"{i},0.5,0,0\n" for i in range(16))
    )
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(old), "")))
    click(qtbot, review.buttons["load"])
    review.rank_by.setCurrentIndex(review.rank_by.findData("confidence"))
    click(qtbot, review.buttons["worst"])
    assert any("no teacher confidence" in m for kind, m in notes if kind == "info")
    assert errors(notes) == []


def test_errors_are_notifications_and_the_widget_stays_usable(
    qtbot, viewer, teacher, sample, notes, tmp_path, monkeypatch
):
    widget = QualityWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert "No teacher prediction" in widget.summary.text()
    click(qtbot, widget.fitting.panel.train_button)
    assert "Teacher widget" in errors(notes)[-1]
    assert not widget.runner.is_running and widget.fitting.panel.train_button.isEnabled()

    # no teacher layer yet: load a teacher file, which predicts the image into a teacher layer
    teacher_file = save_checkpoint(tmp_path / "teacher.pt", teacher[0])
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(teacher_file), ""))
    )
    click(qtbot, widget.load_teacher_button)
    assert widget.load_teacher_button.text() == "Cancel"
    wait_idle(qtbot, widget)
    layer = widget.teacher_picker.layer()
    assert layer is not None and layer.name == "fish teacher"
    assert handoff(layer)["bundle"].class_ids == teacher[0].class_ids
    assert widget.load_teacher_button.text() == "Load..."

    viewer.add_labels(np.zeros_like(sample.labels_sparse), name="empty", scale=sample.scale)
    widget.labels_picker.setCurrentText("empty")
    click(qtbot, widget.fitting.panel.train_button)
    assert "No slice of 'empty' is annotated" in errors(notes)[-1]
    widget.labels_picker.setCurrentText("painted")

    # a failure inside the worker (a classifier for other classes) comes back as a notification
    bad_labels = sample.labels_sparse.copy()
    bad_labels[bad_labels > 0] = 200
    viewer.add_labels(bad_labels, name="other classes", scale=sample.scale)
    widget.labels_picker.setCurrentText("other classes")
    click(qtbot, widget.fitting.panel.train_button)
    wait_idle(qtbot, widget)
    assert "Fitting the quality classifier failed" in errors(notes)[-1]
    assert widget.fitting.panel.status_label.text() == "Fitting failed."
    assert widget.fitting.panel.train_button.isEnabled()

    # Stop during the fit: no classifier, usable again
    widget.labels_picker.setCurrentText("painted")
    click(qtbot, widget.fitting.panel.train_button)
    click(qtbot, widget.fitting.panel.stop_button)
    wait_idle(qtbot, widget)
    assert widget.fitting.quality is None
    assert "stopped" in widget.fitting.panel.status_label.text()
    assert widget.fitting.panel.train_button.isEnabled()

    widget.close()  # detaches from the viewer's dims
    viewer.dims.set_current_step(0, 3)
