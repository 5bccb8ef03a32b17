"""Strategies ``mixed`` and ``mutual``: their loss terms and pixel selections on hand-computed
tensors, the two-branch network, short runs that learn, checkpoints and prediction choices."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.models import (
    TEACHER_BRANCH,
    BranchedUNet,
    BranchView,
    UNet,
    load_checkpoint,
)
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import simulate_scribbles
from napari_distill.core.strategies import (
    STRATEGIES,
    MixedConfig,
    MutualConfig,
    prediction_bundle,
    weak_targets,
)
from napari_distill.core.strategies.mixed import mixed_loss
from napari_distill.core.strategies.mutual import coteaching_masks, peer_distillation
from napari_distill.core.strategies.weak_losses import (
    entropy_loss,
    kl_loss,
    partial_cross_entropy,
    rampup_weight,
    reliability,
    smallest_share,
)
from napari_distill.core.training import train_teacher
from synthetic import fixed_disk_square_volume as tiny_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_MODEL = ModelConfig(base_channels=8, depth=3, dropout=0.1)
TINY_TRAIN = TrainConfig(steps=4, batch_size=2, patch_size=32, validate_every=2, augment=False)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    image, truth = tiny_volume()
    labels = np.zeros_like(truth)
    labels[[1, 3, 5]] = truth[[1, 3, 5]]
    run = train_teacher(image, labels, model_config=TINY_MODEL, train_config=TINY_TRAIN)
    run_to_completion(run.steps())
    weak = simulate_scribbles(truth, slices=[0, 2, 4, 6, 7], length=10, background_label=255)
    return run.best_bundle(), image, labels, truth, weak


# ----------------------------------------------------------------------------- loss terms
def test_entropy_matches_a_hand_computation():
    # pixel 1: logits (0, 0) -> p = (1/2, 1/2), H = log 2; pixel 2: (log 3, 0) -> (3/4, 1/4)
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]).view(1, 2, 1, 2)
    h2 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert entropy_loss(logits).item() == pytest.approx((math.log(2) + h2) / 2, rel=1e-5)
    mask = torch.tensor([[[False, True]]])
    assert entropy_loss(logits, mask).item() == pytest.approx(h2, rel=1e-5)


def test_kl_matches_a_hand_computation_and_spares_the_teacher():
    student = torch.tensor([0.0, 0.0]).view(1, 2, 1, 1).requires_grad_()
    teacher = torch.tensor([math.log(3.0), 0.0]).view(1, 2, 1, 1).requires_grad_()
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    value = kl_loss(student, teacher)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert student.grad is not None and teacher.grad is None


def test_partial_cross_entropy_ignores_unknown_pixels():
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    target = torch.tensor([[[0, 2], [1, 1]]])
    known = torch.tensor([[[True, False], [True, False]]])
    value = partial_cross_entropy(logits, target, known)
    other = partial_cross_entropy(logits, torch.tensor([[[0, 0], [1, 2]]]), known)
    assert value.item() == pytest.approx(other.item())  # unknown targets do not matter
    value.backward()
    assert logits.grad[..., :, 1].abs().sum() == 0 and logits.grad[..., :, 0].abs().sum() > 0
    log_p = torch.log_softmax(logits.detach(), 1)
    assert value.item() == pytest.approx(-(log_p[0, 0, 0, 0] + log_p[0, 1, 1, 0]).item() / 2)


def test_mixed_loss_adds_kl_and_entropy_on_weak_patches_only():
    teacher, student = torch.randn(2, 2, 3, 4, 4).unbind(0)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    known = torch.ones(2, 4, 4, dtype=torch.bool)
    config = MixedConfig(lambda_kl=0.0, lambda_h=0.0)
    full = torch.tensor([True, True])
    _, terms = mixed_loss(teacher, student, target, known, full, config)
    assert "kl" not in terms and "entropy" not in terms
    weak = torch.tensor([True, False])
    total, terms = mixed_loss(teacher, student, target, known, weak, MixedConfig(1.0, 0.5))
    base, _ = mixed_loss(teacher, student, target, known, weak, MixedConfig(0.0, 0.0))
    assert terms["kl"] == pytest.approx(kl_loss(student[1:], teacher[1:]).item(), rel=1e-5)
    assert terms["entropy"] == pytest.approx(entropy_loss(student[1:]).item(), rel=1e-5)
    assert total.item() == pytest.approx(base.item() + terms["kl"] + 0.5 * terms["entropy"])


def test_weak_targets_map_background_and_unknown_and_reject_foreign_classes():
    weak = np.array([[[0, 255, 1], [2, 0, 0]]])
    points = np.array([[0, 1, 2, 0]])
    config = MixedConfig(point_radius=0)
    out = weak_targets(weak, points, (1, 2, 3), (0, 1, 2), config)
    assert out.tolist() == [[[-1, 0, 1], [2, -1, 0]]]
    with pytest.raises(ValueError, match="no full mask"):
        weak_targets(np.array([[[3]]]), None, (1, 1, 1), (0, 1), config)


# ----------------------------------------------------------------------------- selections
def test_coteaching_keeps_exactly_the_intended_share_of_the_peers_easiest_pixels():
    loss_a = torch.rand(2, 10, 10)
    loss_b = torch.rand(2, 10, 10)
    keep_a, keep_b = coteaching_masks(loss_a, loss_b, forget=0.3)
    assert int(keep_a.sum()) == int(keep_b.sum()) == 140
    assert loss_b[keep_a].max() <= loss_b[~keep_a].min()  # A learns where B finds it easy
    assert loss_a[keep_b].max() <= loss_a[~keep_b].min()
    assert int(smallest_share(loss_a, 0.0).sum()) == 0
    assert bool(smallest_share(loss_a, 1.0).all())


def test_coteaching_per_class_keeps_the_share_of_every_class():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, :2] = 1  # a rare class with the larger losses
    loss_b = torch.rand(1, 10, 10) + target  # every class-1 loss above every class-0 loss
    keep_a, _ = coteaching_masks(torch.rand(1, 10, 10), loss_b, 0.5, target, 2)
    assert int(keep_a[target == 1].sum()) == 10 and int(keep_a[target == 0].sum()) == 40
    global_keep, _ = coteaching_masks(torch.rand(1, 10, 10), loss_b, 0.5)
    assert int(global_keep[target == 1].sum()) == 0  # what per-class selection avoids


def test_reliability_selection_picks_the_peers_lowest_disagreement():
    probabilities = torch.tensor([[0.9, 0.5, 0.2, 0.6], [0.1, 0.5, 0.8, 0.4]]).view(1, 2, 1, 4)
    augmented = torch.tensor([[0.9, 0.1, 0.3, 0.6], [0.1, 0.9, 0.7, 0.4]]).view(1, 2, 1, 4)
    u = reliability(probabilities, augmented)
    assert u.flatten().tolist() == pytest.approx([0.0, 0.32, 0.02, 0.0], abs=1e-6)
    chosen = smallest_share(u, 0.75)
    assert chosen.flatten().tolist() == [True, False, True, True]


def test_no_gradient_reaches_a_peers_target():
    logits_a = torch.randn(1, 3, 4, 4, requires_grad=True)
    logits_b = torch.randn(1, 3, 4, 4, requires_grad=True)
    u_a, u_b = torch.rand(1, 4, 4), torch.rand(1, 4, 4)
    kd_a, kd_b = peer_distillation(logits_a, logits_b, u_a, u_b, 0.5)
    assert torch.autograd.grad(kd_a, logits_b, allow_unused=True)[0] is None
    assert torch.autograd.grad(kd_b, logits_a, allow_unused=True)[0] is None
    (grad_a,) = torch.autograd.grad(kd_a, logits_a)
    assert grad_a.abs().sum() > 0
    # only B's reliable half of the pixels teach A
    taught = grad_a.abs().sum(1)[0] > 0
    assert torch.equal(taught, smallest_share(u_b, 0.5)[0])


def test_rampup_goes_from_small_to_one():
    assert rampup_weight(0.0) == pytest.approx(math.exp(-5))
    assert rampup_weight(1.0) == 1.0 and rampup_weight(2.0) == 1.0


# ----------------------------------------------------------------------------- the network
def test_branched_unet_starts_from_a_teacher_in_both_branches():
    config = ModelConfig(num_classes=3, base_channels=4, depth=3)
    teacher = UNet(config).eval()
    model = BranchedUNet(dataclasses.replace(config, decoders=2)).eval()
    model.load_teacher(teacher)
    x = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        first, second = model.forward_branches(x)
        assert torch.allclose(first, teacher(x), atol=1e-5)
        assert torch.allclose(second, first) and torch.allclose(model(x), second)
        assert torch.allclose(BranchView(model, TEACHER_BRANCH)(x), first)


# ----------------------------------------------------------------------------- short runs
def _losses(run, steps):
    return [record.loss for record in run.steps()][:steps]


@pytest.mark.parametrize("name", ["mixed", "mutual"])
def test_a_short_run_lowers_its_loss_and_its_checkpoint_says_which_strategy(setup, name, tmp_path):
    teacher, image, labels, truth, weak = setup
    train = dataclasses.replace(TINY_TRAIN, steps=30, validate_every=30, learning_rate=3e-3)
    extra = {"weak_labels": weak} if name == "mixed" else {}
    source = labels if name == "mixed" else truth  # mutual: every slice painted
    config = STRATEGIES[name].config_class(lambda_kd=0.0) if name == "mutual" else None
    run = STRATEGIES[name].build(
        teacher, image, source, [], train_config=train, device="cpu",
        **({"strategy_config": config} if config else {}), **extra,
    )  # fmt: skip
    losses = _losses(run, 30)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    path = run.save(tmp_path / f"{name}.pt")
    bundle, _ = load_checkpoint(path, kind="student")
    assert bundle.extra["strategy"] == name
    resumed = STRATEGIES[name].build(
        teacher, image, source, [], device="cpu", resume_from=path, **extra
    )
    assert resumed.step == 30


def test_mixed_trains_on_weak_slices_only_where_painted(setup):
    teacher, image, labels, _truth, weak = setup
    run = STRATEGIES["mixed"].build(
        teacher, image, labels, [], train_config=TINY_TRAIN, device="cpu", weak_labels=weak
    )
    assert run.meta.extra["accepted_slices"] == [0, 2, 4, 6, 7]  # the weak slices
    batch = run.objective.batch(np.random.default_rng(0))
    weak_patches = ~batch["full"]
    assert bool(weak_patches.any())
    assert 0 < float(batch["known"][weak_patches].mean()) < 0.5


def test_prediction_bundle_follows_the_settings(setup):
    teacher, image, labels, truth, weak = setup
    mixed = STRATEGIES["mixed"].build(
        teacher, image, labels, [], train_config=TINY_TRAIN, device="cpu", weak_labels=weak,
        strategy_config=MixedConfig(predict_with="teacher"),
    ).best_bundle()  # fmt: skip
    assert isinstance(prediction_bundle(mixed).model, BranchView)
    pair = STRATEGIES["mutual"].build(
        teacher, image, truth, [], train_config=TINY_TRAIN, device="cpu",
        strategy_config=MutualConfig(predict_with="second"),
    ).best_bundle()  # fmt: skip
    chosen = prediction_bundle(pair)
    assert chosen.model is pair.model.members[1] and chosen.model_config.members == 1
    assert prediction_bundle(teacher) is teacher
