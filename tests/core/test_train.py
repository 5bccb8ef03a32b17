"""Teacher training on a tiny synthetic volume: it learns, is reproducible, stops and resumes.

The pieces (sampling, augmentation, losses, schedule) are in test_training_pieces.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_distill.core.config import ModelConfig, PredictConfig, TrainConfig
from napari_distill.core.evaluation import mean_iou
from napari_distill.core.inference import predict_bundle, predict_slice_probabilities
from napari_distill.core.models import (
    CheckpointError,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from napari_distill.core.preprocess import Normalization, as_stack, slice_input
from napari_distill.core.progress import run_to_completion
from napari_distill.core.training import (
    TrainingRun,
    TrainStep,
    resume_training,
    train_teacher,
)
from napari_distill.core.training.splits import split_slices
from synthetic import disk_square_volume as synthetic_volume

torch.set_num_threads(2)

TINY_MODEL = ModelConfig(base_channels=8, depth=3)


@pytest.fixture(scope="module")
def volume():
    image, truth = synthetic_volume()
    painted = truth.copy()
    painted[1::2] = 0  # odd slices are held aside: never seen in training or validation
    return image, truth, painted


def config(**overrides) -> TrainConfig:
    values = {"steps": 20, "batch_size": 4, "patch_size": 32, "validate_every": 10}
    values.update(overrides)
    return TrainConfig(**values)


def test_teacher_beats_trivial_baseline_on_held_aside_slices(volume):
    image, truth, painted = volume
    run = train_teacher(
        image,
        painted,
        model_config=TINY_MODEL,
        train_config=config(steps=150, validate_every=25, patience=100),
        device="cpu",
        class_names={1: "disk", 2: "square"},
    )
    records = list(run.steps())
    assert [r.step for r in records] == list(range(1, 151))
    assert all(isinstance(r, TrainStep) and math.isfinite(r.loss) for r in records)
    assert records[-1].best_score is not None and records[-1].best_score > 0.5
    assert records[-1].eta_s == 0.0
    bundle = run.best_bundle()
    assert bundle.class_ids == (0, 1, 2) and bundle.class_names[1] == "disk"
    stack = as_stack(image)
    held = list(range(1, 8, 2))
    pred = np.stack(
        [
            predict_slice_probabilities(
                bundle.model,
                slice_input(stack, i, bundle.normalization),
                PredictConfig(),
                torch.device("cpu"),
            ).argmax(0)
            for i in held
        ]
    )
    score = mean_iou(pred, truth[held], class_ids=[0, 1, 2])
    baseline = mean_iou(np.zeros_like(pred), truth[held], class_ids=[0, 1, 2])
    assert score > baseline + 0.4, (score, baseline)


def test_a_teacher_at_half_scale_learns_and_keeps_its_scale(volume, tmp_path):
    """downsample=2: patches of 32 network pixels cover 64 image pixels (the whole 48 x 48
    slice here), the checkpoint keeps the scale and the labels come back at full size."""
    image, truth, painted = volume
    run = train_teacher(
        image,
        painted,
        model_config=ModelConfig(base_channels=8, depth=3, downsample=2),
        train_config=config(steps=150, validate_every=50, patience=100),
        device="cpu",
    )
    assert run.objective.sampler.patch_shape == (48, 48)  # 64 image pixels, clipped
    bundle = run_to_completion(run.steps())
    path = tmp_path / "half.pt"
    save_checkpoint(path, bundle)
    loaded, _ = load_checkpoint(path, kind="teacher")
    assert loaded.model_config.downsample == 2
    held = list(range(1, 8, 2))
    prediction = run_to_completion(predict_bundle(loaded, image, device="cpu", slices=held))
    pred = np.asarray(prediction.labels)[held]
    assert pred.shape == truth[held].shape
    score = mean_iou(pred, truth[held], class_ids=[0, 1, 2])
    baseline = mean_iou(np.zeros_like(pred), truth[held], class_ids=[0, 1, 2])
    assert score > baseline + 0.4, (score, baseline)


def _losses(image, painted, **overrides) -> list[float]:
    run = train_teacher(
        image, painted, model_config=TINY_MODEL, train_config=config(**overrides), device="cpu"
    )
    return [record.loss for record in run.steps()]


def test_same_seed_same_losses(volume):
    image, _, painted = volume
    first = _losses(image, painted, steps=8, seed=3)
    assert first == _losses(image, painted, steps=8, seed=3)
    assert first != _losses(image, painted, steps=8, seed=4)


def test_stop_save_resume_continues_where_it_stopped(volume, tmp_path):
    image, _, painted = volume
    settings = config(steps=16, validate_every=4, patience=100, seed=1)
    uninterrupted = train_teacher(
        image, painted, model_config=TINY_MODEL, train_config=settings, device="cpu"
    )
    expected = [record.loss for record in uninterrupted.steps()]

    run = train_teacher(
        image, painted, model_config=TINY_MODEL, train_config=settings, device="cpu"
    )
    steps = run.steps()
    for _ in range(6):  # the consumer stops iterating after 6 steps (the GUI's Stop)
        next(steps)
    assert run.step == 6
    assert run.best_bundle().model is not run.model  # usable at any point
    path = run.save(tmp_path / "run.pt")
    # The file is a normal checkpoint of the best model...
    best, _ = load_checkpoint(path, kind="teacher")
    assert best.extra["best_step"] == 4
    # ...that also resumes the run.
    resumed = resume_training(path, image, painted, device="cpu")
    assert resumed.step == 6 and resumed.total_steps == 16
    assert len(resumed.history) == 6
    rest = [record.loss for record in resumed.steps()]
    assert [r.step for r in resumed.history] == list(range(1, 17))
    np.testing.assert_allclose(rest, expected[6:], rtol=1e-5, atol=1e-6)
    # train_teacher(resume_from=...) is the same thing
    again = train_teacher(image, painted, resume_from=path, device="cpu")
    assert again.step == 6


def test_calling_steps_again_continues(volume):
    image, _, painted = volume
    run = train_teacher(
        image, painted, model_config=TINY_MODEL, train_config=config(steps=6), device="cpu"
    )
    for record in run.steps():
        if record.step == 2:
            break
    assert [record.step for record in run.steps()] == [3, 4, 5, 6]
    assert run.stop_reason == "completed"


class _ConstantTarget:
    """A minimal objective: push the logits of random inputs towards class 0."""

    def batch(self, rng):
        return {"x": torch.from_numpy(rng.standard_normal((2, 1, 16, 16)).astype(np.float32))}

    def loss(self, model, batch):
        logits = model(batch["x"])
        loss = torch.nn.functional.cross_entropy(
            logits, torch.zeros(logits.shape[:1] + logits.shape[2:], dtype=torch.long)
        )
        return loss, {"ce": float(loss.detach())}


def _generic_run(validator, validate_start: bool = False, **overrides) -> TrainingRun:
    from napari_distill.core.models import ModelBundle

    torch.manual_seed(0)
    model_config = ModelConfig(base_channels=4, depth=2)
    bundle = ModelBundle(
        build_model(model_config), model_config, (0, 1), {}, Normalization((0.0,), (1.0,))
    )
    settings = config(steps=50, validate_every=2, **overrides)
    return TrainingRun(
        bundle,
        _ConstantTarget(),
        settings,
        device=torch.device("cpu"),
        total_steps=50,
        validator=validator,
        validate_start=validate_start,
    )


def test_early_stopping_after_patience_validations_without_improvement():
    run = _generic_run(lambda model: 0.5, patience=3)
    records = list(run.steps())
    # first validation (step 2) sets the best; three more without improvement stop the run
    assert records[-1].step == 8
    assert run.stop_reason == "early_stopping"
    assert run.best_step == 2 and run.best_score == 0.5
    assert list(run.steps()) == []  # an early-stopped run stays stopped


def test_best_bundle_keeps_the_best_weights():
    scores = iter([0.2, 0.9, 0.1, 0.3])
    run = _generic_run(lambda model: next(scores), patience=10)
    steps = run.steps()
    for _ in range(4):
        next(steps)
    snapshot = {k: v.clone() for k, v in run.model.state_dict().items()}
    for _ in range(4):
        next(steps)
    best = run.best_bundle()
    assert run.best_step == 4 and best.extra["best_score"] == 0.9
    for key, value in best.model.state_dict().items():
        torch.testing.assert_close(value, snapshot[key])


class _EarlyPeak:
    """A validator scoring 0.9 at its first call and 0.6 after: a noisy early peak."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, model) -> float:
        self.calls += 1
        return 0.9 if self.calls == 1 else 0.6


@pytest.mark.parametrize("keep_final", [True, False])
def test_a_completed_schedule_keeps_its_final_weights_unless_told_otherwise(keep_final):
    run = _generic_run(_EarlyPeak(), patience=1000, keep_final=keep_final)
    kept = run_to_completion(run.steps())
    assert run.stop_reason == "completed" and run.keeps_final is keep_final
    if keep_final:
        assert (run.best_step, run.best_score) == (50, 0.6)
        expected = run.model.state_dict()
    else:
        assert (run.best_step, run.best_score) == (2, 0.9)
        expected = run._best_state
    for key, value in kept.model.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    assert kept.extra["best_step"] == run.best_step


def test_a_stopped_run_keeps_its_best_weights_even_with_keep_final():
    run = _generic_run(_EarlyPeak(), patience=1000)
    steps = run.steps()
    for _ in range(10):
        next(steps)  # the user stops after 10 of 50 steps
    assert run.best_step == 2 and run.best_bundle().extra["best_score"] == 0.9


def test_a_fine_tuned_student_keeps_its_best_even_when_completed():
    run = _generic_run(_EarlyPeak(), validate_start=True, patience=1000)
    run_to_completion(run.steps())
    assert not run.keeps_final
    assert run.stop_reason == "completed" and (run.best_step, run.best_score) == (0, 0.9)


def test_starting_weights_are_a_candidate_when_fine_tuning():
    # training only makes this model worse: with validate_start the starting weights are kept
    scores = iter([0.8, 0.5, 0.4, 0.3])
    run = _generic_run(lambda model: next(scores), validate_start=True, patience=3)
    start = {k: v.clone() for k, v in run.model.state_dict().items()}
    records = list(run.steps())
    assert run.best_step == 0 and run.best_score == 0.8
    assert run.stop_reason == "early_stopping" and records[-1].step == 6
    for key, value in run.best_bundle().model.state_dict().items():
        torch.testing.assert_close(value, start[key])


def test_early_stopping_can_be_switched_off():
    run = _generic_run(lambda model: 0.5, patience=3)
    run.early_stopping = False
    records = list(run.steps())
    assert records[-1].step == 50 and run.stop_reason == "completed"


@pytest.mark.parametrize(("annotated", "fraction", "allowed"), [(4, 0.25, False), (8, 0.4, True)])
def test_a_teacher_stops_early_only_on_enough_validation_slices(annotated, fraction, allowed):
    image, truth = synthetic_volume(n=annotated)
    run = train_teacher(
        image,
        truth,
        model_config=TINY_MODEL,
        train_config=config(validation_fraction=fraction),
        device="cpu",
    )
    n_validation = len(run.meta.extra["validation_slices"])
    assert (n_validation >= 3) is allowed and run.early_stopping is allowed


def test_time_budget_stops_the_run():
    run = _generic_run(None, max_minutes=1e-9)
    records = list(run.steps())
    assert len(records) == 1 and run.stop_reason == "time_budget"


def test_clear_errors_for_unusable_labels(volume):
    image, _, painted = volume
    with pytest.raises(ValueError, match="no annotated slice: paint at least one slice"):
        train_teacher(image, np.zeros_like(painted), device="cpu")
    with pytest.raises(ValueError, match="do not match"):
        train_teacher(image, painted[:, :40], device="cpu")
    with pytest.raises(ValueError, match="only one class"):
        train_teacher(image, np.ones_like(painted), device="cpu")
    with pytest.raises(ValueError, match="integer class ids"):
        train_teacher(image, painted.astype(np.float32), device="cpu")


def test_resume_from_a_foreign_file_fails_clearly(volume, tmp_path):
    image, _, painted = volume
    path = tmp_path / "weights.pt"
    torch.save(build_model(TINY_MODEL).state_dict(), path)
    with pytest.raises(CheckpointError, match="weights.pt"):
        resume_training(path, image, painted, device="cpu")


def test_few_annotated_slices_validate_on_training_slices(volume, caplog):
    image, _, painted = volume
    two = np.zeros_like(painted)
    two[[0, 2]] = painted[[0, 2]]
    with caplog.at_level("WARNING"):
        run = train_teacher(
            image, two, model_config=TINY_MODEL, train_config=config(steps=2), device="cpu"
        )
    assert "validating on the training slices" in caplog.text
    assert run.meta.extra["validation_slices"] == [0, 2]


def test_validation_fraction_zero_is_a_choice_not_a_warning(caplog):
    with caplog.at_level("INFO"):
        split = split_slices([1, 4, 7, 9], validation_fraction=0.0, seed=0)
    assert split == ([1, 4, 7, 9], [1, 4, 7, 9])
    assert "validation fraction 0" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_class_painted_on_one_slice_is_never_held_out(caplog):
    annotated = [2, 5, 8, 11, 14, 17]
    classes = {i: {1, 2} for i in annotated}
    classes[8] = {1, 2, 3}  # class 3 is painted on slice 8 alone
    held = set()
    for seed in range(40):
        training, validation = split_slices(annotated, 0.2, seed, classes)
        assert 8 in training and 8 not in validation and len(validation) == 1
        assert sorted(training + validation) == annotated
        held.update(validation)
        # Where slice 8 is not in the way, the split is the one drawn without the classes.
        if split_slices(annotated, 0.2, seed)[1] != [8]:
            assert (training, validation) == split_slices(annotated, 0.2, seed)
    assert held == set(annotated) - {8}
    with caplog.at_level("INFO"):
        seed = next(s for s in range(40) if split_slices(annotated, 0.2, s)[1] == [8])
        split_slices(annotated, 0.2, seed, classes)
    assert "slice(s) 8 kept for training" in caplog.text


def test_no_slice_to_spare_validates_on_the_training_slices(caplog):
    classes = {1: {1}, 4: {2}, 7: {3}}  # every slice holds a class of its own
    with caplog.at_level("WARNING"):
        split = split_slices([1, 4, 7], 0.5, 0, classes)
    assert split == ([1, 4, 7], [1, 4, 7])
    assert "none can be held out" in caplog.text
    # Two validation slices wanted, one can be spared: one is held out.
    fewer = split_slices([1, 4, 7, 9], 0.5, 0, {1: {3}, 4: {4}, 7: {1, 2}, 9: {1, 2}})
    assert len(fewer[1]) == 1 and fewer[1][0] in (7, 9)


def test_the_teacher_trains_on_the_only_slice_of_a_class(volume):
    image, _, painted = volume
    labels = painted.copy()
    labels[labels == 2] = 1
    labels[4][painted[4] == 2] = 3  # class 3 on slice 4 only
    for seed in range(6):
        run = train_teacher(
            image, labels, model_config=TINY_MODEL, train_config=config(steps=1, seed=seed),
            device="cpu",
        )  # fmt: skip
        assert 4 in run.meta.extra["train_slices"]
        assert 4 not in run.meta.extra["validation_slices"]
