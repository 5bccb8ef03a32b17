"""Strategy ``kd``: the loss terms on hand-computed tensors, masking, the student loop."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_distill.core.config import KDConfig, ModelConfig, TrainConfig
from napari_distill.core.models import load_checkpoint
from napari_distill.core.progress import run_to_completion
from napari_distill.core.strategies import STRATEGIES, get_strategy
from napari_distill.core.strategies.kd import kd_objective_loss
from napari_distill.core.training import kd_loss, train_teacher
from synthetic import fixed_disk_square_volume as tiny_volume

TINY_MODEL = ModelConfig(base_channels=8, depth=3, dropout=0.0)
TINY_TRAIN = TrainConfig(
    steps=4, batch_size=2, patch_size=32, validate_every=2, augment=False, seed=0
)


@pytest.fixture(scope="module")
def teacher_setup():
    torch.manual_seed(0)
    image, truth = tiny_volume()
    labels = np.zeros_like(truth)
    annotated = [1, 3, 5]
    labels[annotated] = truth[annotated]
    run = train_teacher(
        image, labels, model_config=TINY_MODEL, train_config=TINY_TRAIN, device="cpu"
    )
    for _ in run.steps():
        pass
    return run.best_bundle(), image, labels


# ----------------------------------------------------------------------------- losses
def test_kd_loss_is_zero_when_teacher_equals_student():
    logits = torch.randn(2, 3, 4, 5)
    assert kd_loss(logits, logits.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_matches_a_hand_computation():
    # One pixel, two classes: z_s = (0, 0), z_t = (2, 0), T = 2.
    student = torch.tensor([0.0, 0.0]).view(1, 2, 1, 1)
    teacher = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1)
    p_t = np.array([math.e, 1.0]) / (math.e + 1.0)  # softmax((2, 0) / 2) = softmax((1, 0))
    p_s = np.array([0.5, 0.5])
    expected_kl = float(np.sum(p_t * np.log(p_t / p_s)))
    value = kd_loss(student, teacher, 2.0).item()
    assert value == pytest.approx(4.0 * expected_kl, rel=1e-5)  # T^2 = 4
    # At T = 1 the same logits give softmax((2, 0)) and no scaling.
    q_t = np.array([math.e**2, 1.0]) / (math.e**2 + 1.0)
    assert kd_loss(student, teacher, 1.0).item() == pytest.approx(
        float(np.sum(q_t * np.log(q_t / p_s))), rel=1e-5
    )


def test_kd_loss_is_a_mean_over_pixels_and_gives_no_gradient_to_the_teacher():
    student = torch.randn(1, 3, 2, 2, requires_grad=True)
    teacher = torch.randn(1, 3, 2, 2, requires_grad=True)
    per_pixel = [
        kd_loss(student[..., r : r + 1, c : c + 1], teacher[..., r : r + 1, c : c + 1], 3.0)
        for r in range(2)
        for c in range(2)
    ]
    total = kd_loss(student, teacher, 3.0)
    expected = float(torch.stack(per_pixel).detach().mean())
    assert total.detach().item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert student.grad is not None and teacher.grad is None


def test_masked_pixels_change_nothing():
    student = torch.randn(2, 3, 4, 4)
    teacher = torch.randn(2, 3, 4, 4)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[0] = True  # only the first patch counts (an accepted slice)
    before = kd_loss(student, teacher, 2.0, mask)
    changed_student, changed_teacher = student.clone(), teacher.clone()
    changed_student[1] = torch.randn(3, 4, 4) * 10
    changed_teacher[1] = torch.randn(3, 4, 4) * 10
    after = kd_loss(changed_student, changed_teacher, 2.0, mask)
    assert after.item() == pytest.approx(before.item(), rel=1e-6)
    assert before.item() == pytest.approx(kd_loss(student[:1], teacher[:1], 2.0).item(), rel=1e-6)
    assert kd_loss(student, teacher, 2.0, torch.zeros_like(mask)).item() == 0.0


def test_objective_loss_is_ce_plus_weighted_kd():
    torch.manual_seed(1)
    student = torch.randn(1, 3, 3, 3)
    teacher = torch.randn(1, 3, 3, 3)
    target = torch.randint(0, 3, (1, 3, 3))
    ce = F.cross_entropy(student, target).item()
    kd = kd_loss(student, teacher, 2.0).item()
    loss, terms = kd_objective_loss(student, teacher, target, KDConfig(lambda_kd=0.5))
    assert loss.item() == pytest.approx(ce + 0.5 * kd, rel=1e-5)
    assert terms["ce"] == pytest.approx(ce, rel=1e-5) and terms["kd"] == pytest.approx(kd)
    ce_only, terms = kd_objective_loss(student, teacher, target, KDConfig(lambda_kd=0.0))
    assert ce_only.item() == pytest.approx(ce, rel=1e-5) and "kd" not in terms


def test_kd_config_refuses_bad_values():
    with pytest.raises(ValueError, match="temperature"):
        KDConfig(temperature=0.0)
    with pytest.raises(ValueError, match="lambda_kd"):
        KDConfig(lambda_kd=-1.0)
    with pytest.raises(ValueError, match="annotated_share"):
        KDConfig(annotated_share=1.5)


def test_registry_lists_kd_with_its_settings():
    spec = get_strategy("kd")
    assert spec is STRATEGIES["kd"] and spec.config_class is KDConfig
    assert {f.name for f in spec.config_fields()} >= {"temperature", "lambda_kd"}
    with pytest.raises(ValueError, match="kd"):
        get_strategy("nope")


# ----------------------------------------------------------------------------- the student
def test_student_trains_only_on_annotated_and_accepted_slices(teacher_setup):
    teacher, image, labels = teacher_setup
    build = STRATEGIES["kd"].build
    run = build(teacher, image, labels, [0, 6], train_config=TINY_TRAIN, device="cpu")
    used = {i for sampler, _ in run.objective.samplers for i in sampler.slice_indices}
    validation = set(teacher.extra["validation_slices"])
    assert used == (set(teacher.extra["train_slices"]) | {0, 6}) and not used & validation
    # Unaccepted slices never contribute: scrambling them leaves the batches unchanged.
    scrambled = image.copy()
    scrambled[[2, 4, 7]] = np.random.default_rng(5).normal(0, 100, scrambled[[2, 4, 7]].shape)
    other = build(teacher, scrambled, labels, [0, 6], train_config=TINY_TRAIN, device="cpu")
    first = run.objective.batch(np.random.default_rng(3))
    second = other.objective.batch(np.random.default_rng(3))
    assert all(torch.equal(first[key], second[key]) for key in first)


@pytest.mark.parametrize("share", [0.5, 0.9, 0.0])
def test_annotated_share_sets_where_patches_come_from(teacher_setup, share):
    # Two annotated training slices beside five accepted ones: drawn in proportion to their
    # numbers, the ground truth would get 2 patches in 7; the share fixes it however many.
    teacher, image, labels = teacher_setup
    train = TrainConfig(steps=4, batch_size=400, patch_size=16, augment=False, seed=0)
    config = KDConfig(annotated_share=share)
    accepted_slices = [0, 2, 4, 6, 7]
    run = STRATEGIES["kd"].build(teacher, image, labels, accepted_slices, train_config=train,
                                 strategy_config=config, device="cpu")  # fmt: skip
    (annotated, no_kd), (accepted, kd) = run.objective.samplers
    assert (no_kd, kd) == (0.0, 1.0) and len(accepted.slice_indices) == 5
    assert len(annotated.slice_indices) == len(teacher.extra["train_slices"]) == 2
    # The batch's KD weights tell which sampler each patch came from (0: annotated).
    kd_weights = run.objective.batch(np.random.default_rng(1))["kd"]
    from_annotated = float((kd_weights == 0).float().mean())
    assert from_annotated == pytest.approx(share, abs=0.07)


def test_a_student_trusts_its_validation_only_on_enough_slices(teacher_setup):
    # As for its teacher: the module's teacher holds out one slice, too few to stop on.
    teacher, image, labels = teacher_setup
    run = STRATEGIES["kd"].build(teacher, image, labels, [0], train_config=TINY_TRAIN,
                                 device="cpu")  # fmt: skip
    assert len(teacher.extra["validation_slices"]) == 1 and run.early_stopping is False
    # ... and keeps its final weights rather than the ones that one slice would choose.
    assert run.keeps_final is True
    image, truth = tiny_volume(n=10)
    train = dataclasses.replace(TINY_TRAIN, validation_fraction=0.4)
    many = train_teacher(image, truth, model_config=TINY_MODEL, train_config=train, device="cpu")
    for _ in many.steps():
        pass
    teacher = many.best_bundle()
    assert len(teacher.extra["validation_slices"]) >= 3
    run = STRATEGIES["kd"].build(teacher, image, truth, [], train_config=train, device="cpu")
    # Enough slices: it stops on them and never ends below its starting (teacher's) weights.
    assert run.early_stopping is True and run.keeps_final is False


def test_student_stop_resume_and_checkpoint(teacher_setup, tmp_path):
    teacher, image, labels = teacher_setup
    config = TrainConfig(steps=6, batch_size=2, patch_size=32, validate_every=2, augment=False)
    strategy = KDConfig(temperature=3.0, lambda_kd=0.5)
    run = STRATEGIES["kd"].build(
        teacher, image, labels, [0, 6, 7], train_config=config, strategy_config=strategy,
        device="cpu",
    )  # fmt: skip
    records = run.steps()
    for _ in range(3):
        record = next(records)
    assert record.step == 3 and record.phase == "kd" and "kd" in record.logs
    path = run.save(tmp_path / "student.pt")
    bundle, checkpoint = load_checkpoint(path, kind="student")
    assert bundle.extra["strategy"] == "kd"
    assert bundle.extra["strategy_config"]["temperature"] == 3.0
    assert bundle.extra["accepted_slices"] == [0, 6, 7]
    resumed = STRATEGIES["kd"].build(
        teacher, image, labels, [], train_config=TINY_TRAIN, device="cpu", resume_from=path
    )
    assert resumed.step == 3 and resumed.total_steps == 6
    assert resumed.objective.config == strategy
    steps = [r.step for r in resumed.steps()]
    assert steps == [4, 5, 6]
    assert resumed.best_score is not None


def test_smaller_student_starts_from_scratch(teacher_setup, caplog):
    teacher, image, labels = teacher_setup
    with caplog.at_level(logging.WARNING):
        run = STRATEGIES["kd"].build(
            teacher, image, labels, [0], train_config=TINY_TRAIN, device="cpu",
            strategy_config=KDConfig(smaller_student=True, init_from_teacher=True),
        )  # fmt: skip
    assert "from scratch" in caplog.text
    assert run.model.config == teacher.model_config.student()
    assert run.meta.extra["from_teacher"] is False
    build = STRATEGIES["kd"].build
    same = build(teacher, image, labels, [0], train_config=TINY_TRAIN, device="cpu")
    weights = same.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in teacher.model.state_dict().items())


def test_larger_student_is_wider_and_trained_from_scratch(teacher_setup, caplog, tmp_path):
    teacher, image, labels = teacher_setup
    with caplog.at_level(logging.WARNING):
        run = STRATEGIES["kd"].build(
            teacher, image, labels, [0], train_config=TINY_TRAIN, device="cpu",
            strategy_config=KDConfig(larger_student=True),
        )  # fmt: skip
    assert "larger student cannot start from the teacher" in caplog.text
    config = run.model.config
    assert config.base_channels == 2 * teacher.model_config.base_channels
    assert config.depth == teacher.model_config.depth and config.members == 1
    assert run.meta.extra["from_teacher"] is False
    assert run_to_completion(run.steps()) is not None  # it trains
    run.save(tmp_path / "student.pt")
    loaded, _ = load_checkpoint(tmp_path / "student.pt", device="cpu")
    assert loaded.model_config.base_channels == config.base_channels
    assert loaded.extra["strategy_config"]["larger_student"] is True
    with pytest.raises(ValueError, match="both smaller and larger"):
        KDConfig(smaller_student=True, larger_student=True)


def test_noisy_student_noise_reaches_the_student_only(teacher_setup):
    """The student sees a noised patch and trains with more dropout; the teacher's logits
    come from the clean patch; the student still starts from the teacher's weights."""
    from napari_distill.core.strategies.kd import NOISY_STUDENT_DROPOUT

    teacher, image, labels = teacher_setup
    run = STRATEGIES["kd"].build(
        teacher, image, labels, [0, 2], train_config=TINY_TRAIN, device="cpu",
        strategy_config=KDConfig(noisy_student=True),
    )  # fmt: skip
    assert run.meta.model_config.dropout == NOISY_STUDENT_DROPOUT
    rates = {m.p for m in run.model.modules() if isinstance(m, torch.nn.Dropout2d)}
    assert rates == {NOISY_STUDENT_DROPOUT}  # the teacher had none (TINY_MODEL)
    weights = run.model.state_dict()
    assert all(torch.equal(v, weights[k]) for k, v in teacher.model.state_dict().items())
    objective = run.objective
    batch = objective.batch(np.random.default_rng(0))
    assert batch["x"].shape == batch["x_teacher"].shape
    assert not torch.equal(batch["x"], batch["x_teacher"])
    seen = []
    hook = objective.teacher.register_forward_hook(lambda _m, inputs, _o: seen.append(inputs[0]))
    try:
        objective.loss(run.model, batch)
    finally:
        hook.remove()
    assert len(seen) == 1 and torch.equal(seen[0], batch["x_teacher"])
    plain = (
        STRATEGIES["kd"]
        .build(teacher, image, labels, [0, 2], train_config=TINY_TRAIN, device="cpu")
        .objective.batch(np.random.default_rng(0))
    )
    assert "x_teacher" not in plain
    assert torch.equal(plain["x"], batch["x_teacher"])  # the same patches, un-noised


def test_student_refuses_bad_input(teacher_setup):
    teacher, image, labels = teacher_setup
    with pytest.raises(ValueError, match="outside the stack"):
        STRATEGIES["kd"].build(teacher, image, labels, [99], train_config=TINY_TRAIN, device="cpu")
    foreign = labels.copy()
    foreign[1, 0, 0] = 7
    with pytest.raises(ValueError, match="not trained on"):
        STRATEGIES["kd"].build(teacher, image, foreign, [0], train_config=TINY_TRAIN, device="cpu")


def test_same_seed_same_student_even_with_dropout():
    image, truth = tiny_volume()
    labels = np.zeros_like(truth)
    labels[[1, 3, 5]] = truth[[1, 3, 5]]
    dropout_model = ModelConfig(base_channels=8, depth=3, dropout=0.3)
    run = train_teacher(
        image, labels, model_config=dropout_model, train_config=TINY_TRAIN, device="cpu"
    )
    teacher = run_to_completion(run.steps())

    def student_losses() -> list[float]:
        torch.rand(17)  # whatever the caller did with torch's RNG before
        build = STRATEGIES["kd"].build
        student = build(teacher, image, labels, [0, 6], train_config=TINY_TRAIN, device="cpu")
        return [record.loss for record in student.steps()]

    assert student_losses() == student_losses()
