"""The quality classifier: its target, its training material, a short fit, scoring, checkpoints.

One tiny teacher and one tiny classifier are trained once for the module (seeded), so the
whole file runs in seconds on two cores.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_distill.core.config import ModelConfig, QualityConfig, TrainConfig
from napari_distill.core.evaluation import spearman
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import CheckpointError, save_checkpoint
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import (
    QualityFitReport,
    QualityModel,
    QualityNet,
    SnapshotRecorder,
    fit_quality,
    holdout_split,
    load_quality,
    pseudo_label_confidence,
    save_quality,
    score_slices,
)
from napari_distill.core.quality.variants import (
    VariantProgress,
    make_variants,
    perturb_input,
    plan_sources,
    quality_input,
    slice_class_ious,
    slice_iou,
)
from napari_distill.core.training import TrainStep, train_teacher
from synthetic import disk_square_volume

torch.set_num_threads(2)

# Every setting the tiny teacher's quality depends on is pinned, so changes of the defaults
# elsewhere do not move these tests.
TINY_MODEL = ModelConfig(base_channels=8, depth=3, dropout=0.1, norm="group")
TINY_QUALITY = QualityConfig(
    base_channels=8, input_size=32, steps=80, variants_per_slice=6, learning_rate=2e-3, seed=0
)


@pytest.fixture(scope="module")
def volume():
    image, truth = disk_square_volume(n=10)
    painted = truth.copy()
    painted[1::2] = 0  # odd slices are not annotated
    return image, truth, painted


@pytest.fixture(scope="module")
def teacher(volume):
    image, _, painted = volume
    run = train_teacher(
        image,
        painted,
        model_config=TINY_MODEL,
        train_config=TrainConfig(
            steps=40, batch_size=4, patch_size=48, learning_rate=1e-2, validate_every=10
        ),
        device="cpu",
    )
    recorder = SnapshotRecorder(run.model, max_snapshots=2)
    bundle = run_to_completion(recorder.record(run.steps()))
    return bundle, recorder


@pytest.fixture(scope="module")
def fitted(volume, teacher):
    image, _, painted = volume
    bundle, recorder = teacher
    records = []
    model = run_to_completion(
        fit_quality(
            bundle,
            image,
            painted,
            config=TINY_QUALITY,
            teacher_snapshots=recorder.snapshots,
            device="cpu",
        ),
        records.append,
    )
    return model, records


# ------------------------------------------------------------------------------ the target
def test_slice_iou_on_hand_examples():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = 1  # 4 pixels of class 1
    assert slice_iou(truth, truth) == 1.0
    pred = np.zeros_like(truth)
    pred[:2, :1] = 1  # 2 of them: IoU 2/4
    assert slice_iou(pred, truth) == pytest.approx(0.5)
    pred[3, 3] = 2  # a class absent from the truth counts, with IoU 0
    assert slice_iou(pred, truth) == pytest.approx(0.25)
    # Background only in both: the empty pseudo-label is right.
    empty = np.zeros_like(truth)
    assert slice_iou(empty, empty) == 1.0
    assert slice_iou(empty, truth) == 0.0
    # Classes absent from both are ignored even when listed.
    assert slice_iou(truth, truth, class_ids=(0, 1, 2, 5)) == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        slice_iou(truth, truth[:2])


def test_slice_class_ious_marks_absent_classes():
    truth = np.array([[0, 1], [1, 1]])
    pred = np.array([[1, 1], [0, 1]])
    ious = slice_class_ious(pred, truth, num_classes=3)
    assert ious[0] == pytest.approx(2 / 4)
    assert math.isnan(ious[1])


def test_quality_input_pads_to_a_square_and_marks_the_slice():
    image = np.ones((1, 20, 40), np.float32)
    probs = np.zeros((3, 20, 40), np.float32)
    probs[1] = 1.0
    x = quality_input(image, probs, 40)
    assert x.shape == (1 + 3 + 1, 40, 40)
    assert x[-1, 10:30].min() == 1.0 and x[-1, :10].max() == 0.0  # validity mask
    assert x[0, :10].max() == 0.0 and x[2, 10:30].min() == 1.0
    assert quality_input(image, probs, 16).shape == (5, 16, 16)
    with pytest.raises(ValueError, match="differ"):
        quality_input(image, probs[:, :10], 16)


def test_sources_are_planned_and_seeded():
    sources = plan_sources(n_snapshots=2, n_random=6, seed=3)
    kinds = [s.kind for s in sources]
    assert kinds[:3] == ["teacher", "snapshot", "snapshot"]
    assert sorted(kinds[3:]) == sorted(["dropout", "input", "weights"] * 2)
    assert all(0.0 < s.strength <= 1.0 for s in sources[3:])
    assert sources == plan_sources(2, 6, 3)


def test_perturbations_change_the_input_more_when_stronger():
    x = np.random.default_rng(0).normal(0.5, 0.1, (1, 32, 32)).astype(np.float32)
    mild = [np.abs(perturb_input(x, 0.1, np.random.default_rng(s)) - x).mean() for s in range(8)]
    strong = [np.abs(perturb_input(x, 1.0, np.random.default_rng(s)) - x).mean() for s in range(8)]
    assert np.mean(strong) > np.mean(mild)
    assert perturb_input(x, 1.0, np.random.default_rng(0)).shape == x.shape


# ------------------------------------------------------------------------------ snapshots
def test_snapshot_recorder_keeps_evenly_spread_cpu_copies():
    model = torch.nn.Linear(2, 1)
    recorder = SnapshotRecorder(model, max_snapshots=3)

    def steps():
        for step in range(1, 101):
            with torch.no_grad():
                model.weight.fill_(step)
            yield TrainStep(step, 100, 0.0, 0.0, 0.0, None, None, None)
        return "done"

    assert run_to_completion(recorder.record(steps())) == "done"
    assert len(recorder.snapshots) == 3
    assert recorder.steps[0] < 30 and recorder.steps[-1] == 100
    assert 30 <= recorder.steps[1] <= 70
    for step, state in zip(recorder.steps, recorder.snapshots, strict=True):
        assert state["weight"].device.type == "cpu"
        assert float(state["weight"][0, 0]) == step  # a copy, not a view of the live weights
    with pytest.raises(ValueError):
        SnapshotRecorder(model, 0)


# ------------------------------------------------------------------------------ variants
def test_variants_span_a_range_of_iou(volume, teacher):
    image, _, painted = volume
    bundle, recorder = teacher
    from napari_distill.core.preprocess import as_stack, labels_to_indices, slice_input

    stack = as_stack(image)
    slices = [0, 2]
    inputs = {i: slice_input(stack, i, bundle.normalization) for i in slices}
    truths = {i: labels_to_indices(painted[i], bundle.class_ids) for i in slices}
    weights_before = {k: v.clone() for k, v in bundle.model.state_dict().items()}
    records = []
    variants = run_to_completion(
        make_variants(
            bundle.model,
            inputs,
            truths,
            num_classes=3,
            n_colours=1,
            context_slices=0,
            config=TINY_QUALITY,
            snapshots=recorder.snapshots,
        ),  # fmt: skip
        records.append,
    )
    n_sources = 1 + len(recorder.snapshots) + TINY_QUALITY.variants_per_slice
    assert len(variants.targets) == n_sources * len(slices)
    assert isinstance(records[-1], VariantProgress) and records[-1].done == records[-1].total
    assert variants.inputs.shape == (len(variants.targets), 1 + 3 + 1, 32, 32)
    assert variants.targets.max() - variants.targets.min() > 0.5
    assert variants.targets.max() > 0.7 and variants.targets.min() < 0.3
    assert {"teacher", "snapshot", "dropout", "input", "weights"} == set(variants.kinds)
    assert variants.subset([2]).slices.tolist() == [2] * n_sources
    for key, value in bundle.model.state_dict().items():  # sources work on copies
        assert torch.equal(value, weights_before[key])


def test_holdout_split():
    assert holdout_split([3, 5], 0.25, 0) == ([3, 5], [])
    train, held = holdout_split([1, 2, 3, 4, 5, 6, 7, 8], 0.25, 0)
    assert len(held) == 2 and sorted(train + held) == list(range(1, 9))
    assert len(holdout_split([1, 2, 3], 0.1, 0)[1]) == 1


# ------------------------------------------------------------------------------ the fit
def test_fit_reports_spearman_and_yields_progress(fitted):
    model, records = fitted
    assert isinstance(model, QualityModel)
    kinds = {type(r) for r in records}
    assert kinds == {VariantProgress, TrainStep}
    steps = [r for r in records if isinstance(r, TrainStep)]
    assert steps[-1].step == TINY_QUALITY.steps and steps[-1].phase == "quality"
    report = model.report
    assert isinstance(report, QualityFitReport)
    assert len(report.holdout_slices) == 1 and len(report.train_slices) == 4
    assert report.n_holdout == len(report.holdout_true) > 0
    assert -1.0 <= report.spearman <= 1.0  # a number: the held-out slice has enough variants
    assert report.spearman == pytest.approx(spearman(report.holdout_predicted, report.holdout_true))
    assert 0.0 <= report.mean_abs_error <= 1.0


def test_classifier_ranks_a_corrupted_pseudo_label_below_a_clean_one(volume, teacher, fitted):
    image, truth, _ = volume
    bundle, _ = teacher
    model, _ = fitted
    prediction = run_to_completion(predict_bundle(bundle, image, device="cpu"))
    clean = prediction.probabilities
    # The teacher's own probabilities, moved by half a slice: confident, but in the wrong place.
    shifted = np.roll(clean, shift=(24, 24), axis=(2, 3))
    rng = np.random.default_rng(0)
    noisy = rng.dirichlet(np.ones(3), size=clean.shape[1:]).transpose(3, 0, 1, 2)
    scores = {}
    for name, probs in (("clean", clean), ("shifted", shifted), ("random", noisy)):
        scores[name] = run_to_completion(score_slices(model, image, probs, device="cpu")).quality
        assert scores[name].shape == (image.shape[0],) and not np.isnan(scores[name]).any()
    true_clean = np.mean([slice_iou(prediction.labels[i], truth[i]) for i in range(10)])
    assert true_clean > 0.6  # the teacher is good, so "clean" is a good pseudo-label
    for bad in ("shifted", "random"):
        assert np.median(scores["clean"]) > np.median(scores[bad]) + 0.1, (bad, scores)
        assert np.mean(scores["clean"] > scores[bad]) >= 0.8, (bad, scores)


def test_score_slices_with_a_teacher_bundle_scores_only_the_slices_asked(volume, teacher, fitted):
    image, _, _ = volume
    bundle, _ = teacher
    model, _ = fitted
    records = []
    rated = run_to_completion(
        score_slices(model, image, bundle, slices=[1, 3], device="cpu"), records.append
    )
    for scores in (rated.quality, rated.confidence):
        assert np.isnan(scores[[0, 2, 4]]).all() and not np.isnan(scores[[1, 3]]).any()
        assert ((scores[[1, 3]] >= 0) & (scores[[1, 3]] <= 1)).all()
    assert records[-1].done == records[-1].total == 2
    with pytest.raises(ValueError, match="outside the stack"):
        run_to_completion(score_slices(model, image, bundle, slices=[10], device="cpu"))
    with pytest.raises(ValueError, match="do not match"):
        run_to_completion(score_slices(model, image, np.zeros((3, 10, 8, 8)), device="cpu"))
    with pytest.raises(ValueError, match="colour"):
        run_to_completion(score_slices(model, np.zeros((2, 48, 48, 3)), bundle, device="cpu"))


def test_fit_refuses_labels_of_another_shape(volume, teacher):
    image, _, painted = volume
    with pytest.raises(ValueError, match="do not match"):
        run_to_completion(fit_quality(teacher[0], image, painted[:, :40], device="cpu"))


def test_per_class_head_and_too_few_slices_to_hold_out(volume, teacher, caplog):
    image, _, painted = volume
    two = painted.copy()
    two[4:] = 0  # slices 0 and 2 annotated: nothing can be held out
    config = QualityConfig(
        base_channels=4, input_size=16, steps=3, variants_per_slice=1, per_class_head=True
    )
    model = run_to_completion(fit_quality(teacher[0], image, two, config=config, device="cpu"))
    assert math.isnan(model.report.spearman) and model.report.holdout_slices == ()
    assert "no rank correlation" in caplog.text
    x = np.zeros((2, model.net.in_channels, 16, 16), np.float32)
    scores, per_class = model.predict(x)
    assert scores.shape == (2,) and per_class is not None and per_class.shape == (2, 2)


# ------------------------------------------------------------------------------ checkpoints
def test_checkpoint_round_trip(tmp_path, fitted, volume, teacher):
    model, _ = fitted
    path = save_quality(tmp_path / "quality.pt", model)
    loaded = load_quality(path)
    assert loaded.class_ids == model.class_ids and loaded.config == model.config
    assert loaded.report == model.report and loaded.step == model.step
    x = np.random.default_rng(0).random((3, model.net.in_channels, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x)[0], model.predict(x)[0], atol=1e-6)


def test_loading_a_teacher_as_quality_is_refused(tmp_path, teacher):
    path = save_checkpoint(tmp_path / "teacher.pt", teacher[0])
    with pytest.raises(CheckpointError, match="teacher checkpoint, not a quality"):
        load_quality(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_quality(tmp_path / "junk.pt")


def test_quality_net_takes_any_square_input():
    net = QualityNet(in_channels=5, base_channels=4, class_outputs=2)
    assert net(torch.zeros(2, 5, 16, 16)).shape == (2, 3)
    assert net(torch.zeros(1, 5, 40, 40)).shape == (1, 3)


def test_scoring_a_prediction_equals_scoring_its_probabilities(volume, teacher, fitted):
    image, _, _ = volume
    bundle, _ = teacher
    model, _ = fitted
    prediction = run_to_completion(predict_bundle(bundle, image, device="cpu"))
    from_prediction = run_to_completion(score_slices(model, image, prediction, device="cpu"))
    from_array = run_to_completion(
        score_slices(model, image, prediction.probabilities, device="cpu")
    )
    np.testing.assert_allclose(from_prediction.quality, from_array.quality)
    np.testing.assert_allclose(from_prediction.confidence, from_array.confidence)
    labels = prediction.labels  # the confidence is taken over the pseudo-label's foreground
    for i in range(image.shape[0]):
        probabilities = prediction.probabilities[:, i]
        foreground = labels[i] > 0
        pixels = probabilities.max(0)[foreground] if foreground.any() else probabilities.max(0)
        assert from_array.confidence[i] == pytest.approx(pixels.mean(), abs=1e-5)


def test_confidence_is_low_where_the_teacher_hesitates_over_its_foreground():
    sure = np.zeros((3, 4, 4), np.float32)
    sure[0] = 1.0
    sure[:, :2, :2] = np.array([0.0, 0.95, 0.05])[:, None, None]  # an organ, labelled surely
    torn = sure.copy()
    torn[:, :2, :2] = np.array([0.1, 0.45, 0.45])[:, None, None]  # same labels, no certainty
    assert pseudo_label_confidence(sure) == pytest.approx(0.95)
    assert pseudo_label_confidence(torn) == pytest.approx(0.45)  # background pixels left out
    empty_but_unsure = np.stack([np.full((4, 4), 0.55), np.full((4, 4), 0.45)])
    assert pseudo_label_confidence(empty_but_unsure) == pytest.approx(0.55)
    assert pseudo_label_confidence(torn, background=None) == pytest.approx((4 * 0.45 + 12) / 16)
