# ruff: noqa: F811  (fixtures imported from test_widget_quality are parameters here)
"""The Quality review dock's files, as a user saves and loads them: the selection (CSV and
JSON) and the quality classifier; bad files refused with the review unchanged."""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QFileDialog

from napari_distill._widgets.common.handoff import handoff
from napari_distill._widgets.quality.widget import SELECTION_KEY
from napari_distill.core.quality import Selection, save_quality
from test_widget_quality import (  # noqa: F401  (fixtures)
    click,
    errors,
    fitted,
    notes,
    sample,
    score,
    teacher,
    viewer,
    widget,
)


def test_selection_csv_and_json_round_trip(qtbot, widget, fitted, notes, tmp_path, monkeypatch):
    selection = score(qtbot, widget, fitted)
    review = widget.review
    order = review.worst_first()
    selection.reject(order[-1])
    selection.accept(order[0])
    saved_accepted, saved_overrides = set(selection.accepted), dict(selection.overrides)

    for name, chosen in (("picked.csv", "CSV (*.csv)"), ("picked", "JSON (*.json)")):
        target = tmp_path / name
        monkeypatch.setattr(
            QFileDialog, "getSaveFileName", staticmethod(lambda *a, t=target, c=chosen: (str(t), c))
        )
        click(qtbot, review.buttons["save"])
    assert (tmp_path / "picked.csv").is_file() and (tmp_path / "picked.json").is_file()

    layer = widget.teacher_picker.layer()
    for name in ("picked.csv", "picked.json"):
        selection.reset(order[0])
        monkeypatch.setattr(
            QFileDialog, "getOpenFileName", staticmethod(lambda *a, n=name: (str(tmp_path / n), ""))
        )
        click(qtbot, review.buttons["load"])
        loaded = review.selection
        assert loaded is not selection and handoff(layer)[SELECTION_KEY] is loaded
        assert loaded.accepted == saved_accepted and loaded.overrides == saved_overrides
        assert review.table.model().rowCount() == 16
    assert errors(notes) == []

    bad = tmp_path / "bad.csv"
    bad.write_text("slice,score\n0,0.5\n")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(bad), "")))
    click(qtbot, review.buttons["load"])
    assert any("Could not load the selection" in m for m in errors(notes))
    assert review.selection is loaded  # the review is unchanged

    other = tmp_path / "other.csv"
    Selection.from_scores(np.full(5, 0.9)).save_csv(other)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(other), "")))
    click(qtbot, review.buttons["load"])
    assert "has 16" in errors(notes)[-1] and review.selection is loaded


def test_quality_model_files(qtbot, widget, fitted, notes, tmp_path, monkeypatch):
    path = save_quality(tmp_path / "quality.pt", fitted)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(path), "")))
    click(qtbot, widget.fitting.load_button)
    assert widget.fitting.quality is not None and widget.score_button.isEnabled()
    assert "Loaded quality.pt" in widget.fitting.model_label.text()

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a: (str(corrupt), "")))
    click(qtbot, widget.fitting.load_button)
    assert any("Could not load a quality classifier" in m for m in errors(notes))
    assert widget.fitting.load_button.isEnabled()

    target = tmp_path / "again"
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a: (str(target), "checkpoint"))
    )
    click(qtbot, widget.fitting.save_button)
    assert (tmp_path / "again.pt").is_file()
