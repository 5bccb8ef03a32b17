"""Teacher ensembles: several U-Nets trained side by side, predicting their mean probability.

The module's arithmetic on hand-made members, the members' slice splits (each holds out its
own slices), the objective's one-batch-per-member loss and the members' mean validation,
training, checkpoints and resume, prediction, and a student distilled from an ensemble.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import torch

from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import load_checkpoint, read_checkpoint, save_checkpoint
from napari_distill.core.models.networks import ModelEnsemble, UNet, build_model, ensemble_members
from napari_distill.core.preprocess import Normalization, as_stack
from napari_distill.core.progress import run_to_completion
from napari_distill.core.strategies import STRATEGIES
from napari_distill.core.strategies.base import best_member
from napari_distill.core.training import SliceSampler, members_held_out_apart, train_teacher
from napari_distill.core.training.objectives import (
    EnsembleObjective,
    EnsembleValidator,
    SliceValidator,
    SupervisedObjective,
)
from napari_distill.core.training.splits import (
    early_stopping_allowed,
    member_splits,
    split_painted_slices,
)
from synthetic import fixed_disk_square_volume as tiny_volume

torch.set_num_threads(2)

TINY_ENSEMBLE = ModelConfig(base_channels=8, depth=3, dropout=0.0, members=3)
TINY_TRAIN = TrainConfig(
    steps=6, batch_size=2, patch_size=32, validate_every=3, augment=False, seed=0
)


@pytest.fixture(scope="module")
def painted_volume():
    image, truth = tiny_volume()
    labels = np.zeros_like(truth)
    labels[[1, 3, 5]] = truth[[1, 3, 5]]
    return image, truth, labels


@pytest.fixture(scope="module")
def ensemble_teacher(painted_volume):
    image, _, labels = painted_volume
    run = train_teacher(
        image, labels, model_config=TINY_ENSEMBLE, train_config=TINY_TRAIN, device="cpu"
    )
    return run_to_completion(run.steps())


# ------------------------------------------------------------------------------ the module
def test_config_counts_members_and_students_are_single():
    assert ModelConfig().members == 1
    for bad in (0, 9):
        with pytest.raises(ValueError, match=r"ensemble\) must be between 1 and 8"):
            ModelConfig(members=bad)
    assert TINY_ENSEMBLE.single() == dataclasses.replace(TINY_ENSEMBLE, members=1)
    assert TINY_ENSEMBLE.student().members == 1
    assert isinstance(build_model(TINY_ENSEMBLE.single()), UNet)


def test_ensemble_predicts_the_mean_of_its_members_probabilities():
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY_ENSEMBLE, num_classes=3)).eval()
    assert isinstance(model, ModelEnsemble) and len(ensemble_members(model)) == 3
    members = ensemble_members(model)
    # Different starting weights: otherwise the ensemble would be one network three times.
    first, second = (dict(m.named_parameters())["head.weight"] for m in members[:2])
    assert not torch.equal(first, second)
    assert model.size_multiple == members[0].size_multiple == 4
    x = torch.randn(2, 1, 20, 28)
    with torch.inference_mode():
        expected = torch.stack([torch.softmax(m(x), 1) for m in members]).mean(0)
        ensemble = torch.softmax(model(x), 1)
    assert ensemble.shape == (2, 3, 20, 28)
    torch.testing.assert_close(ensemble, expected, rtol=1e-5, atol=1e-6)
    assert ensemble_members(members[0]) == [members[0]]


def test_a_class_every_member_rules_out_gets_a_finite_logit():
    model = build_model(dataclasses.replace(TINY_ENSEMBLE, members=2)).eval()
    for member in ensemble_members(model):
        torch.nn.init.zeros_(member.head.weight)
        with torch.no_grad():
            member.head.bias.copy_(torch.tensor([0.0, -200.0]))
    with torch.inference_mode():
        logits = model(torch.randn(1, 1, 8, 8))
    assert torch.isfinite(logits).all()
    assert float(torch.softmax(logits, 1)[:, 0].min()) > 0.999


# ------------------------------------------------------------------------------ the splits
def test_members_hold_out_different_slices_and_keep_each_class(painted_volume):
    _, truth, _ = painted_volume
    labels = np.zeros_like(truth)
    painted = [0, 1, 2, 3, 4, 5]
    labels[painted] = truth[painted]
    labels[2][labels[2] == 2] = 0  # the square (class 2) painted on every slice but 2 ...
    labels[0][truth[0] == 2] = 3  # ... and a class 3 painted on slice 0 only
    config = TrainConfig(seed=0)
    splits = member_splits(labels, np.array(painted), config, 4)
    # The first member's split is the teacher's own; each member trains on what it holds out
    # from, and no member holds out slice 0 (the only painting of class 3).
    assert splits[0] == split_painted_slices(labels, np.array(painted), config)
    for training, validation in splits:
        assert len(validation) == 1 and sorted(training + validation) == painted
        assert 0 not in validation
    held_out = [validation[0] for _, validation in splits]
    assert len(set(held_out)) == 4  # four members, four of the five slices that can go
    # More members than slices to spare: the slices held out least often go next.
    six = member_splits(labels, np.array(painted), config, 6)
    assert sorted(v[0] for _, v in six[:5]) == [1, 2, 3, 4, 5] and six[5][1] == six[0][1]
    assert not early_stopping_allowed(*splits)  # one validation slice per member


def test_members_share_the_split_when_none_can_be_held_out(painted_volume):
    _, truth, _ = painted_volume
    labels = np.zeros_like(truth)
    labels[[1, 3]] = truth[[1, 3]]  # two painted slices: validate on the training slices
    splits = member_splits(labels, np.array([1, 3]), TrainConfig(), 3)
    assert splits == [([1, 3], [1, 3])] * 3
    wide = [(list(range(6)), list(range(6, 9))), (list(range(3, 9)), list(range(3)))]
    assert early_stopping_allowed(*wide)
    assert not early_stopping_allowed(wide[0], ([1, 2], [7, 8]))


# ------------------------------------------------------------------------------ the objective
def _objective(slices: tuple[int, ...] = (1, 3)) -> SupervisedObjective:
    image, truth = tiny_volume()
    stack = as_stack(image)
    sampler = SliceSampler(
        stack, {i: truth[i] for i in slices}, (0, 1, 2), Normalization.from_image(stack),
        patch_size=16, batch_size=2,
    )  # fmt: skip
    return SupervisedObjective(sampler)


def test_each_member_learns_from_its_own_batch():
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY_ENSEMBLE, members=2, num_classes=3))
    first_slices, second_slices = _objective((1, 3)), _objective((5,))
    objective = EnsembleObjective([first_slices, second_slices])
    batch = objective.batch(np.random.default_rng(0))
    assert sorted(batch) == ["0/x", "0/y", "1/x", "1/y"]  # two batches, kept apart
    assert objective.members == 2
    single = _objective()
    first, second = ensemble_members(model)

    def own(b, member):
        return {k.split("/")[1]: v for k, v in b.items() if k.startswith(f"{member}/")}

    by_hand = single.loss(first, own(batch, 0))[0] + single.loss(second, own(batch, 1))[0]
    total, parts = objective.loss(model, batch)
    torch.testing.assert_close(total, by_hand)
    assert set(parts) >= {"ce", "dice"}
    # The second member's gradient comes from the second batch alone.
    total.backward()
    gradient = second.head.weight.grad.clone()
    model.zero_grad()
    changed = {k: v.clone() for k, v in batch.items()}
    changed["0/x"] = torch.randn_like(changed["0/x"])
    objective.loss(model, changed)[0].backward()
    torch.testing.assert_close(second.head.weight.grad, gradient)
    with pytest.raises(ValueError, match="for 2 member"):
        objective.loss(build_model(TINY_ENSEMBLE), batch)
    # Member m's batch comes from member m's own slices.
    rng = np.random.default_rng(0)
    drawn = [first_slices.batch(rng), second_slices.batch(rng)]
    torch.testing.assert_close(batch["0/x"], drawn[0]["x"])
    torch.testing.assert_close(batch["1/x"], drawn[1]["x"])


def test_an_ensemble_validates_as_the_mean_of_its_members_on_their_own_slices():
    image, truth = tiny_volume()
    stack = as_stack(image)
    normalization = Normalization.from_image(stack)
    validators = [
        SliceValidator(stack, truth, slices, (0, 1, 2), normalization, torch.device("cpu"))
        for slices in ([1], [4, 6])
    ]
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(TINY_ENSEMBLE, members=2, num_classes=3)).eval()
    first, second = ensemble_members(model)
    expected = (validators[0](first) + validators[1](second)) / 2
    assert EnsembleValidator(validators)(model) == pytest.approx(expected)
    with pytest.raises(ValueError, match="scores 2 member"):
        EnsembleValidator(validators)(build_model(TINY_ENSEMBLE))


# ------------------------------------------------------------------------------ training
def test_an_ensemble_teacher_trains_saves_and_predicts(ensemble_teacher, painted_volume, tmp_path):
    image, _, _ = painted_volume
    teacher = ensemble_teacher
    assert isinstance(teacher.model, ModelEnsemble) and teacher.model_config.members == 3
    # Each member held out one of the three painted slices and trained on the other two.
    splits = teacher.extra["member_splits"]
    assert sorted(v for _, (v,) in splits) == [1, 3, 5]
    assert all(sorted(t) == sorted({1, 3, 5} - set(v)) for t, v in splits)
    assert (teacher.extra["train_slices"], teacher.extra["validation_slices"]) == tuple(splits[0])
    assert members_held_out_apart(teacher)
    path = save_checkpoint(tmp_path / "teacher.pt", teacher)
    loaded, checkpoint = load_checkpoint(path, kind="teacher")
    assert checkpoint["model_config"]["members"] == 3
    assert isinstance(loaded.model, ModelEnsemble)
    prediction = run_to_completion(predict_bundle(loaded, image, slices=[0, 2], device="cpu"))
    probabilities = np.asarray(prediction.probabilities)[:, [0, 2]]
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-3)
    original = run_to_completion(predict_bundle(teacher, image, slices=[0, 2], device="cpu"))
    np.testing.assert_allclose(
        np.asarray(original.probabilities)[:, [0, 2]], probabilities, atol=1e-5
    )


def test_checkpoints_from_before_ensembles_load_as_one_network(tmp_path, painted_volume):
    image, _, labels = painted_volume
    run = train_teacher(
        image, labels, model_config=TINY_ENSEMBLE.single(), train_config=TINY_TRAIN,
        device="cpu",
    )  # fmt: skip
    path = save_checkpoint(tmp_path / "old.pt", run_to_completion(run.steps()))
    checkpoint = read_checkpoint(path, "cpu")
    del checkpoint["model_config"]["members"]
    torch.save(checkpoint, path)
    bundle, _ = load_checkpoint(path)
    assert isinstance(bundle.model, UNet) and bundle.model_config.members == 1


def test_an_ensemble_run_stops_saves_and_resumes(painted_volume, tmp_path):
    image, _, labels = painted_volume
    run = train_teacher(
        image, labels, model_config=TINY_ENSEMBLE, train_config=TINY_TRAIN, device="cpu"
    )
    records = run.steps()
    for _ in range(3):
        next(records)
    path = run.save(tmp_path / "stopped.pt")
    resumed = train_teacher(image, labels, device="cpu", resume_from=path)
    assert resumed.step == 3 and isinstance(resumed.model, ModelEnsemble)
    assert resumed.objective.members == 3
    assert resumed.meta.extra["member_splits"] == run.meta.extra["member_splits"]
    trained_on = [set(o.sampler.slice_indices) for o in resumed.objective.objectives]
    assert trained_on == [set(t) for t, _ in run.meta.extra["member_splits"]]
    assert [v.slices for v in resumed.validator.validators] == [
        v for _, v in run.meta.extra["member_splits"]
    ]
    assert [r.step for r in resumed.steps()] == [4, 5, 6]


def test_an_ensemble_saved_before_member_splits_resumes_on_the_shared_split(
    painted_volume, tmp_path
):
    image, _, labels = painted_volume
    run = train_teacher(
        image, labels, model_config=TINY_ENSEMBLE, train_config=TINY_TRAIN, device="cpu"
    )
    records = run.steps()
    next(records)
    path = run.save(tmp_path / "older.pt")
    checkpoint = read_checkpoint(path, "cpu")
    del checkpoint["extra"]["member_splits"]
    torch.save(checkpoint, path)
    resumed = train_teacher(image, labels, device="cpu", resume_from=path)
    shared = [o.sampler.slice_indices for o in resumed.objective.objectives]
    assert shared == [tuple(run.meta.extra["train_slices"])] * 3


# ------------------------------------------------------------------------------ students
def test_a_student_of_an_ensemble_is_one_network(ensemble_teacher, painted_volume):
    image, _, labels = painted_volume
    teacher = ensemble_teacher
    build = STRATEGIES["kd"].build
    run = build(teacher, image, labels, [0, 2], train_config=TINY_TRAIN, device="cpu")
    assert isinstance(run.model, UNet) and run.meta.model_config.members == 1
    # The members held out different slices: the student starts from the first member, the
    # only one that never trained on its validation slices (the teacher's first split).
    first = ensemble_members(teacher.model)[0].state_dict()
    start = run.model.state_dict()
    assert all(torch.equal(start[k], first[k]) for k in start)
    assert list(run.meta.extra["validation_slices"]) == teacher.extra["validation_slices"]
    records = list(run.steps())
    assert records[-1].step == TINY_TRAIN.steps
    assert all(np.isfinite(r.loss) for r in records)


def test_the_student_starts_from_the_member_that_validates_best(caplog):
    model = build_model(TINY_ENSEMBLE)
    members = ensemble_members(model)
    scores = {id(members[0]): 0.2, id(members[1]): 0.9, id(members[2]): 0.5}
    with caplog.at_level(logging.INFO):
        chosen = best_member(model, lambda member: scores[id(member)])
    assert chosen is members[1]
    assert "member 2 of 3" in caplog.text and "0.200, 0.900, 0.500" in caplog.text
    assert best_member(model, None) is members[0]
    single = build_model(TINY_ENSEMBLE.single())
    assert best_member(single, None) is single
