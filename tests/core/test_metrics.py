"""Metrics on hand-computed tiny arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_distill.core.evaluation import metrics


def test_perfect_prediction_scores_one() -> None:
    truth = np.array([[0, 1, 1], [2, 2, 0]])
    assert metrics.dice_per_class(truth, truth, (0, 1, 2)) == {0: 1.0, 1: 1.0, 2: 1.0}
    assert metrics.mean_iou(truth, truth) == 1.0
    assert metrics.mean_dice(truth, truth) == 1.0


def test_disjoint_prediction_scores_zero() -> None:
    truth = np.array([[1, 1, 0, 0]])
    pred = np.array([[0, 0, 1, 1]])
    assert metrics.iou_per_class(pred, truth, (1,)) == {1: 0.0}
    assert metrics.mean_dice(pred, truth) == 0.0


def test_partial_overlap_hand_computed() -> None:
    truth = np.array([[1, 1, 1, 1, 0, 0]])
    pred = np.array([[0, 1, 1, 1, 1, 1]])
    # class 1: |P∩T| = 3, |P| = 5, |T| = 4 -> Dice 6/9, IoU 3/6
    assert metrics.dice_per_class(pred, truth, (0, 1))[1] == pytest.approx(6 / 9)
    assert metrics.iou_per_class(pred, truth, (0, 1))[1] == pytest.approx(0.5)
    # class 0: |P∩T| = 0 (pred bg at 0, truth bg at 4, 5) -> 0
    assert metrics.iou_per_class(pred, truth, (0, 1))[0] == 0.0
    assert metrics.mean_iou(pred, truth, ignore_background=False) == pytest.approx(0.25)


def test_absent_class_is_nan_and_left_out_of_the_mean() -> None:
    truth = np.array([[0, 1], [1, 0]])
    scores = metrics.iou_per_class(truth, truth, (0, 1, 5))
    assert math.isnan(scores[5])
    assert metrics.mean_iou(truth, truth, class_ids=(0, 1, 5)) == 1.0
    assert math.isnan(metrics.mean_iou(np.zeros((2, 2), int), np.zeros((2, 2), int)))


def test_unlisted_values_still_count_as_errors() -> None:
    truth = np.array([[1, 1]])
    pred = np.array([[1, 7]])
    assert metrics.iou_per_class(pred, truth, (0, 1))[1] == 0.5


def test_only_the_given_slices_are_scored() -> None:
    truth = np.zeros((3, 2, 2), np.uint8)
    truth[:, 0, 0] = 1
    pred = truth.copy()
    pred[1] = 0  # slice 1 is wrong
    assert metrics.mean_iou(pred, truth, slices=[0, 2]) == 1.0
    result = metrics.evaluate_semantic(pred, truth, slices=[0, 1])
    assert result["iou"][1] == 0.5
    assert result["dice"][1] == pytest.approx(2 / 3)
    assert result["mean_iou"] == 0.5
    assert result["class_ids"] == (0, 1)


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="differ"):
        metrics.mean_iou(np.zeros((2, 2), int), np.zeros((2, 3), int))


def test_aji_hand_example() -> None:
    truth = np.zeros((4, 6), np.int32)
    truth[0:2, 0:2] = 1  # area 4
    truth[0:2, 3:6] = 2  # area 6
    pred = np.zeros_like(truth)
    pred[0:2, 0:3] = 5  # area 6: 4 with GT 1, 0 with GT 2
    pred[0:1, 3:6] = 9  # area 3: inside GT 2
    pred[3, 0:2] = 4  # area 2: matches nothing
    # GT 1 -> pred 5 (IoU 4/6): C += 4, U += 6
    # GT 2 -> pred 9 (IoU 3/6): C += 3, U += 6
    # unused pred 4: U += 2  -> AJI = 7 / 14
    assert metrics.aji(pred, truth) == pytest.approx(0.5)
    assert metrics.aji(truth, truth) == 1.0
    assert metrics.aji(np.roll(truth, 3, axis=0) * 0 + (truth == 0) * 3, truth) == 0.0


def test_aji_counts_an_unmatched_truth_object_in_the_union() -> None:
    truth = np.zeros((2, 4), np.int32)
    truth[0, :2] = 1
    truth[1, :2] = 2
    pred = np.zeros_like(truth)
    pred[0, :2] = 1
    assert metrics.aji(pred, truth) == pytest.approx(2 / 4)


def test_f1_counts() -> None:
    truth = np.zeros((1, 12), np.int32)
    truth[0, 0:4] = 1
    truth[0, 4:8] = 2
    truth[0, 8:12] = 3
    pred = np.zeros_like(truth)
    pred[0, 0:4] = 10  # IoU 1 with GT 1
    pred[0, 4:6] = 11  # IoU 0.5 with GT 2: not > 0.5
    pred[0, 9:12] = 12  # IoU 0.75 with GT 3
    match = metrics.match_instances(pred, truth, 0.5)
    assert (match.true_positives, match.false_positives, match.false_negatives) == (2, 1, 1)
    assert metrics.f1_at_iou(pred, truth) == pytest.approx(4 / 6)
    assert metrics.f1_at_iou(truth, truth) == 1.0


def test_spearman() -> None:
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 50]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(metrics.spearman([1, 1, 1], [1, 2, 3]))
