"""Teacher against propagation on the painted slices the teacher held out (issue 25).

A tiny volume where the answer is known: class 1 a disk that never moves (copying the nearest
painted slice is exact), class 2 a square that jumps 8 pixels per slice (copying misses it),
and a fake teacher that finds class 2 from its brightness but never class 1. Each source must
win its own class and the combination must get both right.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_distill.core.config import ModelConfig, PropagationConfig, TrainConfig
from napari_distill.core.evaluation.comparison import (
    HeldOut,
    combine_probabilities,
    compare_held_out,
    mix,
)
from napari_distill.core.inference.comparison import (
    NO_HELD_OUT,
    NO_HELD_OUT_ENSEMBLE,
    ComparisonProgress,
    compare_with_propagation,
    held_out_groups,
)
from napari_distill.core.models import ModelBundle, build_model
from napari_distill.core.preprocess import Normalization
from napari_distill.core.progress import run_to_completion

NEAREST = PropagationConfig(method="nearest")
N, H, W = 9, 24, 96


def volume() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((N, H, W), np.uint8)
    rows, cols = np.mgrid[:H, :W]
    disk = (rows - 12) ** 2 + (cols - 10) ** 2 < 25
    for i in range(N):
        truth[i][disk] = 1
        truth[i, 8:14, 24 + 8 * i : 30 + 8 * i] = 2
    image = np.choose(truth, [0.0, 100.0, 200.0]).astype(np.float32)
    return image, truth


class BrightOnly(nn.Module):
    """Class 2 where the normalised intensity is above 0.75; class 1 never."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :1]
        return torch.cat([torch.zeros_like(x), torch.full_like(x, -10.0), 20 * (x - 0.75)], 1)


def fake_teacher(validation: list[int], training: list[int]) -> tuple[ModelBundle, list]:
    bundle = ModelBundle(
        model=BrightOnly(), model_config=ModelConfig(in_channels=1, num_classes=3),
        class_ids=(0, 1, 2), class_names={1: "disk", 2: "square"},
        normalization=Normalization((0.0,), (200.0,)),
    )  # fmt: skip
    return bundle, [(training, validation)]


def painted(truth: np.ndarray, slices: list[int]) -> np.ndarray:
    out = np.zeros_like(truth)
    out[slices] = truth[slices]
    return out


def test_each_source_wins_its_own_class_and_the_combination_gets_both():
    image, truth = volume()
    labels = painted(truth, [0, 2, 4, 6, 8])
    bundle, splits = fake_teacher(validation=[2, 6], training=[0, 4, 8])
    records = []
    result = run_to_completion(
        compare_with_propagation(bundle, image, labels, splits, NEAREST, device="cpu"),
        records.append,
    )
    assert result.fair and result.held_out == ((2, 6),)
    disk, square = result.foreground()
    assert (disk.teacher_iou, disk.propagation_iou) == (0.0, 1.0)  # not found / never moves
    assert square.teacher_iou == 1.0 and square.propagation_iou == 0.0  # found / jumped away
    assert (disk.source, square.source) == ("propagation", "teacher")
    assert result.teacher_miou == pytest.approx(0.5) and result.propagation_miou == 0.5
    assert result.combined_miou == 1.0
    assert {r.source for r in records} == {"teacher", "propagation"}
    assert all(isinstance(r, ComparisonProgress) for r in records)
    assert "disk" in result.summary() and "square" in result.summary()
    assert "the two scored level (mIoU teacher 0.500, nearest propagation 0.500)" in (
        result.summary()
    )

    # The whole stack: the combination follows the choice; painted slices keep their paint.
    ids = np.asarray(result.class_ids).reshape(-1, 1, 1, 1)
    teacher = np.stack([truth == 0, np.zeros_like(truth, bool), truth == 2]).astype(np.float32)
    teacher[0] += truth == 1  # the teacher calls the disk background
    propagation = np.broadcast_to((truth[[0]] == ids), teacher.shape).astype(np.float32)
    combined = combine_probabilities(result, teacher, propagation, labels)
    assert np.allclose(combined.sum(axis=0), 1.0)
    np.testing.assert_array_equal(np.asarray(result.class_ids)[combined.argmax(0)], truth)


def test_no_slice_held_out_says_so_and_keeps_the_teacher():
    image, truth = volume()
    labels = painted(truth, [0, 4, 8])
    bundle, splits = fake_teacher(validation=[0, 4, 8], training=[0, 4, 8])
    result = run_to_completion(compare_with_propagation(bundle, image, labels, splits, NEAREST))
    assert not result.fair and result.note == NO_HELD_OUT
    assert "3 teachers" in result.summary()
    np.testing.assert_array_equal(result.weights(), [1, 1, 1])
    assert not result.uses_propagation


def test_an_ensemble_that_held_nothing_out_is_told_why_not_to_train_more_teachers():
    config = ModelConfig(in_channels=1, num_classes=3, base_channels=4, depth=2, members=3)
    bundle = ModelBundle(
        build_model(config), config, (0, 1, 2), {}, Normalization((0.0,), (1.0,)),
        train_config=TrainConfig(validation_fraction=0.2),
    )  # fmt: skip
    image, truth = volume()
    labels = painted(truth, [0, 4, 8])
    splits = [([0, 4, 8], [0, 4, 8])] * 3  # each slice held some class's only painting
    result = run_to_completion(compare_with_propagation(bundle, image, labels, splits, NEAREST))
    assert not result.fair and result.note == NO_HELD_OUT_ENSEMBLE
    assert "two slices or more" in result.summary()


def test_members_are_grouped_by_the_slices_they_held_out_views_members_too():
    config = ModelConfig(in_channels=1, num_classes=2, base_channels=4, depth=2, members=3)
    bundle = ModelBundle(build_model(config), config, (0, 1), {}, Normalization((0.0,), (1.0,)))
    splits = [([1, 2], [3]), ([1, 3], [2]), ([1, 2], [3])]
    groups, note = held_out_groups(bundle, splits)
    assert groups == {(3,): [0, 2], (2,): [1]} and note == ""
    views = ModelConfig(in_channels=1, num_classes=2, base_channels=4, depth=2, members=3,
                        views=True)  # fmt: skip
    bundle = ModelBundle(build_model(views), views, (0, 1), {}, Normalization((0.0,), (1.0,)))
    groups, note = held_out_groups(bundle, splits)
    assert groups == {(3,): [0, 2], (2,): [1]} and "2 views network(s)" in note


def test_views_networks_score_their_held_out_slices_through_the_volume():
    """Each views network predicts the slices it held out along its own axis: the
    comparison is fair, on every held-out set, and needs no other network."""
    image, truth = volume()
    labels = painted(truth, [0, 2, 4, 6, 8])
    config = ModelConfig(in_channels=1, num_classes=3, base_channels=4, depth=2, members=3,
                         views=True)  # fmt: skip
    torch.manual_seed(0)
    bundle = ModelBundle(
        build_model(config), config, (0, 1, 2), {}, Normalization((0.0,), (200.0,))
    )
    bundle.model.eval()
    splits = [([0, 4, 6, 8], [2]), ([0, 2, 6, 8], [4]), ([0, 2, 4, 8], [6])]
    result = run_to_completion(
        compare_with_propagation(bundle, image, labels, splits, NEAREST, device="cpu")
    )
    assert result.fair and sorted(result.held_out) == [(2,), (4,), (6,)]
    assert "views network" in result.note
    axes = {tuple(s["slices"]): s["axes"] for s in result.held_out_scores}
    assert axes == {(2,): [0], (4,): [1], (6,): [2]}  # who predicted each, for the record


def test_level_classes_are_averaged_and_missing_classes_stay_with_the_teacher():
    truth = np.array([[[0, 1, 1, 0]]], np.uint8)
    one_hot = (truth[np.newaxis] == np.arange(3).reshape(-1, 1, 1, 1)).astype(np.float32)
    held = HeldOut((0,), truth, one_hot, one_hot)
    result = compare_held_out([held], (0, 1, 2), "flow")
    assert [c.weight for c in result.classes] == [0.5, 0.5, 1.0]
    assert "on no held-out slice" in result.classes[2].reason
    assert result.rows()[0]["used"] == "mean"


def test_mix_renormalises_and_keeps_the_teacher_where_both_are_empty():
    teacher = np.array([[0.2, 0.0], [0.8, 0.0]], np.float32)
    propagation = np.array([[1.0, 0.0], [0.0, 0.0]], np.float32)
    out = mix(np.array([0.0, 1.0]), teacher, propagation)
    np.testing.assert_allclose(out[:, 0], [1.0 / 1.8, 0.8 / 1.8])
    np.testing.assert_allclose(out[:, 1], [0.0, 0.0])


def test_the_classes_painted_on_the_held_out_slices_and_each_sets_scores_are_recorded():
    """The overall mIoU averages each source over the classes it predicts or the paint holds
    (a class 2 only the teacher calls counts 0 against it alone); the record beside it scores
    both over the classes painted there (class 1), per held-out set."""
    truth = np.array([[[0, 1, 1, 1]]], np.uint8)
    classes = np.arange(3).reshape(-1, 1, 1, 1)
    teacher = (np.array([[[2, 1, 1, 1]]])[np.newaxis] == classes).astype(np.float32)
    propagation = (np.array([[[0, 1, 1, 0]]])[np.newaxis] == classes).astype(np.float32)
    result = compare_held_out([HeldOut((5,), truth, teacher, propagation, (1,))], (0, 1, 2), "flow")
    assert result.scored_class_ids == (1,)
    square = result.classes[2]
    assert square.teacher_iou == 0.0 and np.isnan(square.propagation_iou)
    assert result.teacher_miou == 0.5 and result.propagation_miou == pytest.approx(2 / 3)
    # Class 1 alone: the teacher finds all 3 of its pixels, the propagation 2.
    assert result.held_out_scores == (
        {"slices": [5], "axes": [1], "teacher_miou": 1.0, "propagation_miou": pytest.approx(2 / 3)},
    )
    assert result.to_dict()["scored_class_ids"] == [1]
