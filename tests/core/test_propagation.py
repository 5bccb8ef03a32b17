"""Label propagation (nearest painted slice, optical flow) and leave-one-painted-slice-out.

Tiny volumes made here: shapes whose answer is known (a disk moving a few pixels per slice,
a disk growing linearly, identical slices), so each test checks a number, not a habit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_distill.core.config import PropagationConfig
from napari_distill.core.evaluation import LeaveOneOutProgress, leave_one_out
from napari_distill.core.inference import (
    NeighbourFlows,
    PropagationProgress,
    propagate,
    propagation_leave_one_out,
)
from napari_distill.core.progress import run_to_completion

NEAREST = PropagationConfig(method="nearest")
SIZE = (40, 56)


def disk(center: tuple[float, float], radius: float, shape=SIZE) -> np.ndarray:
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 < radius**2


def image_of(truth: np.ndarray, seed: int = 0) -> np.ndarray:
    """A smooth bright disk on a dark, slightly noisy background (what a CT slice offers)."""
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(truth.astype(np.float32) * 100.0, (0, 1, 1))
    return smooth + rng.normal(0, 2.0, truth.shape).astype(np.float32)


def moving_disk(n: int = 7, step: float = 2.5) -> np.ndarray:
    """Class 1: a disk of radius 7 moving ``step`` pixels to the right per slice."""
    return np.stack([disk((20, 12 + step * i), 7) for i in range(n)]).astype(np.uint8)


def painted_only(truth: np.ndarray, slices: list[int]) -> np.ndarray:
    out = np.zeros_like(truth)
    out[slices] = truth[slices]
    return out


def run(generator):
    return run_to_completion(generator)


def test_nearest_copies_the_nearest_painted_slice_and_ties_go_below():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 4, (9, 12, 10)).astype(np.uint8)
    painted = painted_only(truth, [2, 6])
    records = []
    result = run_to_completion(propagate(truth, painted, NEAREST), records.append)
    nearest = {0: 2, 1: 2, 3: 2, 4: 2, 5: 6, 7: 6, 8: 6}  # slice 4 is 2 from both: below wins
    for index, source in nearest.items():
        np.testing.assert_array_equal(result.labels[index], truth[source])
    np.testing.assert_array_equal(result.labels[[2, 6]], truth[[2, 6]])
    assert result.painted == (2, 6) and result.slices == (0, 1, 3, 4, 5, 7, 8)
    assert result.class_ids == (0, 1, 2, 3)
    probabilities = result.probabilities
    assert probabilities.shape == (4, 9, 12, 10) and probabilities.dtype == np.float32
    np.testing.assert_array_equal(probabilities.argmax(axis=0), result.labels)
    np.testing.assert_array_equal(probabilities.sum(axis=0), 1.0)
    assert [r.done for r in records] == list(range(1, 8))
    assert all(isinstance(r, PropagationProgress) and r.total == 7 for r in records)


@pytest.mark.parametrize("flow", ["tvl1", "ilk"])
def test_flow_follows_a_moving_disk_outward_from_one_painted_slice(flow):
    truth = moving_disk()
    painted = painted_only(truth, [3])  # the middle: it travels both ways, one way each side
    result = run(propagate(image_of(truth), painted, PropagationConfig(flow=flow)))
    for index in range(truth.shape[0]):
        found = ndimage.center_of_mass(result.labels[index] == 1)
        expected = ndimage.center_of_mass(truth[index] == 1)
        assert np.allclose(found, expected, atol=1.0), (index, found, expected)
    # nearest would leave the disk where it was painted, 7.5 px away at the ends
    copied = run(propagate(image_of(truth), painted, NEAREST)).labels[0]
    assert abs(ndimage.center_of_mass(copied == 1)[1] - ndimage.center_of_mass(truth[0])[1]) > 7


def test_flow_blends_the_painted_slices_below_and_above_by_distance():
    # Identical flat slices: every flow is zero, so a slice's probabilities are exactly the
    # distance-weighted mix of its two painted neighbours' labels.
    labels = np.zeros((5, *SIZE), np.uint8)
    labels[0][disk((20, 20), 6)] = 1
    labels[4][disk((20, 36), 6)] = 2
    result = run(propagate(np.zeros((5, *SIZE), np.float32), labels))
    probabilities = result.probabilities
    only_below = disk((20, 20), 6)
    only_above = disk((20, 36), 6)
    for index, w_below in ((1, 0.75), (2, 0.5), (3, 0.25)):
        np.testing.assert_allclose(probabilities[1, index][only_below], w_below, atol=1e-6)
        np.testing.assert_allclose(probabilities[2, index][only_above], 1 - w_below, atol=1e-6)
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert (result.labels[1] == 1).sum() == only_below.sum() and not (result.labels[1] == 2).any()


def test_flow_between_two_painted_slices_grows_a_growing_shape_in_between():
    truth = np.stack([disk((20, 28), 5 + 2 * i) for i in range(5)]).astype(np.uint8)
    result = run(propagate(image_of(truth), painted_only(truth, [0, 4])))
    areas = [int((result.labels[i] == 1).sum()) for i in range(5)]
    true_areas = [int(truth[i].sum()) for i in range(5)]
    assert areas[0] < areas[2] < areas[4]  # the middle is between its two painted slices
    assert abs(areas[2] - true_areas[2]) < 0.25 * true_areas[2]


def test_leave_one_out_of_identical_slices_is_perfect():
    slice_ = np.zeros(SIZE, np.uint8)
    slice_[disk((20, 20), 8)] = 1
    slice_[5:12, 30:50] = 2
    truth = np.stack([slice_] * 6)
    painted = painted_only(truth, [0, 2, 5])
    score = run(propagation_leave_one_out(image_of(truth), painted, NEAREST))
    assert score.slices == (0, 2, 5) and score.mean_iou == 1.0
    assert score.per_slice == {0: 1.0, 2: 1.0, 5: 1.0} and score.class_ids == (0, 1, 2)
    flow = run(propagation_leave_one_out(image_of(truth), painted, PropagationConfig()))
    assert flow.mean_iou > 0.95


def test_leave_one_out_scores_any_predictor_and_passes_its_records_on():
    truth = moving_disk(5)
    painted = painted_only(truth, [0, 2, 4])
    seen = []

    def predictor(others: np.ndarray, held_out: int):
        assert not others[held_out].any()  # the held-out slice is erased
        assert all(others[i].any() for i in (0, 2, 4) if i != held_out)
        seen.append(held_out)
        yield "training"
        return truth[held_out] if held_out != 4 else np.zeros_like(truth[4])

    records = []
    score = run_to_completion(leave_one_out(painted, predictor), records.append)
    assert seen == [0, 2, 4]
    assert score.per_slice == {0: 1.0, 2: 1.0, 4: 0.0}
    assert score.mean_iou == pytest.approx(2 / 3)  # pooled: disk of slice 4 missed
    assert score.mean_of_slices == pytest.approx(2 / 3)
    assert all(isinstance(r, LeaveOneOutProgress) for r in records)
    assert [r.detail for r in records if r.detail] == ["training"] * 3
    assert [r.done for r in records if r.detail is None] == [1, 2, 3]
    np.testing.assert_array_equal(painted, painted_only(truth, [0, 2, 4]))  # untouched
    # a plain function works too, and one painted slice leaves nothing to hold out
    assert run(leave_one_out(painted, lambda others, i: truth[i])).mean_iou == 1.0
    assert run(leave_one_out(painted_only(truth, [2]), lambda o, i: truth[i])).slices == ()


def test_the_leave_one_out_reuses_the_propagations_flows():
    truth = moving_disk(6)
    image, painted = image_of(truth), painted_only(truth, [0, 3, 5])
    flows = NeighbourFlows(image, PropagationConfig(flow="ilk"))
    run(propagate(image, painted, flows.config, flows=flows))
    assert flows.estimated == 6  # towards slices 1, 2 and 4 from both sides: 3 + 3 steps
    score = run(propagation_leave_one_out(image, painted, flows.config, flows=flows))
    # only the steps into the painted slices were new: each of the 5 neighbouring pairs was
    # estimated once each way over the two calls
    assert flows.estimated == 2 * 5 and score.mean_iou > 0.8
    with pytest.raises(ValueError, match="other flow settings"):
        run(propagate(image, painted, PropagationConfig(flow="tvl1"), flows=flows))
    nothing_kept = NeighbourFlows(image, PropagationConfig(flow="ilk", cache_mb=0))
    run(propagate(image, painted, nothing_kept.config, flows=nothing_kept))
    run(propagate(image, painted, nothing_kept.config, flows=nothing_kept))
    assert nothing_kept.estimated == 2 * 6


def test_only_the_slices_asked_for_are_filled():
    truth = moving_disk(7)
    painted = painted_only(truth, [0, 6])
    result = run(propagate(image_of(truth), painted, slices=[2], keep_probabilities=False))
    assert result.slices == (2,) and result.probabilities is None
    assert result.labels[2].any() and not result.labels[[1, 3, 4, 5]].any()


def test_rgb_stacks_and_single_images():
    truth = moving_disk(4)
    grey = image_of(truth)
    rgb = np.stack([grey, 0.5 * grey, np.full_like(grey, 30.0)], axis=-1)
    result = run(propagate(rgb, painted_only(truth, [0]), PropagationConfig(flow="ilk")))
    found = ndimage.center_of_mass(result.labels[3] == 1)
    assert np.allclose(found, ndimage.center_of_mass(truth[3]), atol=1.0)
    single = run(propagate(grey[0], truth[0], NEAREST))  # a 2D image that is painted
    assert single.slices == () and single.labels.shape == (1, *SIZE)
    np.testing.assert_array_equal(single.labels[0], truth[0])


def test_out_dir_holds_memory_mapped_outputs(tmp_path):
    truth = moving_disk(5)
    result = run(propagate(image_of(truth), painted_only(truth, [0, 4]), out_dir=tmp_path))
    assert isinstance(result.labels, np.memmap) and isinstance(result.probabilities, np.memmap)
    on_disk = np.load(tmp_path / "probabilities.npy")
    assert on_disk.dtype == np.float32 and on_disk.shape == (2, 5, *SIZE)
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), np.asarray(result.labels))


def test_clear_errors():
    truth = moving_disk(3)
    with pytest.raises(ValueError, match="no slice is painted"):
        run(propagate(image_of(truth), np.zeros_like(truth)))
    with pytest.raises(ValueError, match="do not match"):
        run(propagate(image_of(truth), truth[:, :20]))
    with pytest.raises(ValueError, match="outside the stack"):
        run(propagate(image_of(truth), truth, slices=[5]))
    with pytest.raises(ValueError, match="method must be"):
        PropagationConfig(method="copy")
    with pytest.raises(ValueError, match="not painted"):
        run(leave_one_out(painted_only(truth, [0, 2]), lambda o, i: truth[i], slices=[1]))
