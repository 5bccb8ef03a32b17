"""Selection of pseudo-labelled slices: threshold, overrides, annotated slices, files."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from napari_distill.core.quality import Selection, SelectionFileError


@pytest.fixture
def selection() -> Selection:
    scores = np.array([0.9, 0.5, 0.75, np.nan, 0.2, 0.95], np.float32)
    return Selection.from_scores(scores, tau=0.7, annotated=[5])


def test_threshold_decides_and_annotated_slices_are_never_accepted(selection):
    assert selection.accepted == {0, 2}  # 5 scores high but is annotated; 3 was not scored
    assert selection.accepted_slices == [0, 2]
    assert selection.annotated == {5}
    assert math.isnan(selection.scores[3])
    selection.set_tau(0.1)
    assert selection.accepted == {0, 1, 2, 4}
    with pytest.raises(ValueError, match="tau"):
        selection.set_tau(1.5)


def test_overrides_survive_a_tau_change(selection):
    selection.accept(4)  # scores 0.2
    selection.reject(0)  # scores 0.9
    assert selection.accepted == {2, 4}
    assert selection.overrides == {4: True, 0: False}
    selection.set_tau(0.0)
    assert selection.accepted == {1, 2, 4}  # 0 stays rejected, 3 has no score
    selection.set_tau(0.99)
    assert selection.accepted == {4}
    selection.reset(4)
    assert selection.accepted == set() and 4 not in selection.overrides


def test_annotated_and_unknown_slices_cannot_be_overridden(selection):
    with pytest.raises(ValueError, match="annotated"):
        selection.accept(5)
    with pytest.raises(KeyError):
        selection.reject(42)


def test_from_a_dict_of_scores():
    selection = Selection.from_scores({3: 0.8, 7: 0.1}, tau=0.5)
    assert selection.accepted == {3}
    assert sorted(selection.scores) == [3, 7]


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_file_round_trip_keeps_scores_decisions_and_overrides(tmp_path, selection, suffix):
    selection.set_tau(0.6)
    selection.accept(1)
    selection.reject(2)
    path = tmp_path / f"scores{suffix}"
    (selection.save_csv if suffix == ".csv" else selection.save_json)(path)
    loaded = Selection.load(path, tau=None if suffix == ".json" else 0.6)
    assert loaded.tau == pytest.approx(0.6)
    assert loaded.accepted == selection.accepted == {0, 1}
    assert loaded.overrides == selection.overrides
    assert loaded.annotated == {5}
    for index, score in selection.scores.items():
        if math.isnan(score):
            assert math.isnan(loaded.scores[index])
        else:
            assert loaded.scores[index] == pytest.approx(score, abs=1e-6)
    # The loaded overrides still win over a new threshold.
    loaded.set_tau(0.0)
    assert loaded.accepted == {0, 1, 4}


def test_csv_columns(tmp_path, selection):
    path = selection.save_csv(tmp_path / "scores.csv")
    lines = path.read_text().splitlines()
    assert lines[0] == "slice,score,accepted,overridden,annotated,confidence"
    assert lines[1] == "0,0.900000,1,0,0,"  # no confidence given
    assert lines[4] == "3,,0,0,0,"  # not scored
    assert lines[6] == "5,0.950000,0,0,1,"
    selection.confidence[0] = 0.875
    assert selection.save_csv(path).read_text().splitlines()[1] == "0,0.900000,1,0,0,0.875000"


def test_json_holds_tau(tmp_path, selection):
    payload = json.loads(selection.save_json(tmp_path / "s.json").read_text())
    assert payload["tau"] == 0.7
    assert payload["slices"][3] == {
        "slice": 3,
        "score": None,
        "accepted": False,
        "overridden": False,
        "annotated": False,
        "confidence": None,
    }


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("no_columns.csv", "slice,score\n0,0.5\n", "lacks accepted, overridden"),
        ("bad_score.csv", "slice,score,accepted,overridden\n0,high,1,0\n", "not a number"),
        ("bad_flag.csv", "slice,score,accepted,overridden\n0,0.5,maybe,0\n", "1/0 or true"),
        ("twice.csv", "slice,score,accepted,overridden\n0,0.5,1,0\n0,0.4,1,0\n", "twice"),
        ("broken.json", "{not json", "not a valid selection file"),
        ("list.json", "[1, 2]", "'slices' list"),
        ("tau.json", '{"tau": 3, "slices": []}', "outside"),
    ],
)
def test_malformed_files_raise_a_clear_error(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SelectionFileError, match=match) as info:
        Selection.load(path)
    assert name in str(info.value)


def confident(selection: Selection) -> Selection:
    confidence = np.array([0.6, 0.99, 0.7, np.nan, 0.9, 0.2], np.float32)
    return Selection.from_scores(selection.scores, 0.7, selection.annotated, confidence)


def test_confidence_is_kept_beside_the_score_and_ranks_on_its_own(selection):
    rated = confident(selection)
    assert rated.accepted == selection.accepted == {0, 2}  # tau applies to the score only
    assert rated.confidence == pytest.approx({0: 0.6, 1: 0.99, 2: 0.7, 4: 0.9, 5: 0.2})
    # Worst first leaves out annotated slice 5 and slice 3 (no value), ties by index.
    assert rated.worst_first() == [4, 1, 2, 0]
    assert rated.worst_first("confidence") == [0, 2, 4, 1]
    assert selection.worst_first("confidence") == []  # none given
    with pytest.raises(ValueError, match="rank by"):
        rated.worst_first("size")
    # Slices 0, 1, 2, 4: score ranks 4 1 2 0 and confidence 0 2 4 1 disagree.
    assert rated.agreement() == pytest.approx(-0.8)  # 1 - 6 * (9 + 4 + 1 + 4) / (4 * 15)
    assert math.isnan(selection.agreement())


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_confidence_survives_a_file_round_trip(tmp_path, selection, suffix):
    rated = confident(selection)
    path = tmp_path / f"scores{suffix}"
    (rated.save_csv if suffix == ".csv" else rated.save_json)(path)
    loaded = Selection.load(path)
    assert loaded.confidence == pytest.approx(rated.confidence, abs=1e-6)


def test_a_file_without_confidence_still_loads(tmp_path):
    path = tmp_path / "old.csv"
    path.write_text("slice,score,accepted,overridden,annotated\n0,0.8,1,0,0\n1,0.4,0,0,0\n")
    loaded = Selection.load(path)
    assert loaded.accepted == {0} and loaded.confidence == {}
    path.write_text("slice,score,accepted,overridden,confidence\n0,0.8,1,0,sure\n")
    with pytest.raises(SelectionFileError, match="confidence is 'sure'"):
        Selection.load(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Selection.load(tmp_path / "nothing.csv")
