"""The pieces of training: input channels, the learning-rate schedule and step budget, patch
sampling and augmentation, deep supervision, the losses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.models import (
    build_model,
)
from napari_distill.core.preprocess import Normalization, as_stack
from napari_distill.core.training import (
    SupervisedObjective,
    auto_steps,
    lr_at,
    train_teacher,
)
from napari_distill.core.training.losses import ce_dice_loss, class_weights_from_labels, dice_loss
from napari_distill.core.training.sampler import Augmentation, SliceSampler, augment
from synthetic import disk_square_volume as synthetic_volume

torch.set_num_threads(2)


def test_rgb_and_context_set_the_input_channels():
    image, labels = synthetic_volume(n=4, size=32)
    rgb = np.repeat(image[..., None], 3, axis=-1)
    run = train_teacher(
        rgb,
        labels,
        model_config=ModelConfig(base_channels=4, depth=2, context_slices=1),
        train_config=TrainConfig(steps=2, batch_size=4, patch_size=16),
        device="cpu",
    )
    assert run.meta.model_config.in_channels == 9
    assert len(list(run.steps())) == 2


# ------------------------------------------------------------------ schedule and budget
def test_lr_schedule_warms_up_then_decays():
    total, base = 1000, 1e-3
    rates = [lr_at(step, total, base) for step in range(total)]
    assert rates[0] < rates[49] == pytest.approx(base)
    assert all(a >= b for a, b in zip(rates[49:], rates[50:], strict=False))
    assert rates[-1] == pytest.approx(base * 0.01, rel=0.05)


def test_auto_steps_bounds():
    assert auto_steps(100, "cpu") == 2000
    assert auto_steps(10**9, "cpu") == 4000
    assert auto_steps(10**9, "cuda") == 8000
    assert auto_steps(100, "cpu", from_scratch=False) == 500  # fine-tuning a trained network
    assert auto_steps(10**9, "mps", from_scratch=False) == 4000
    # in between, the budget grows with the painted area
    assert 2000 < auto_steps(5 * 512 * 512, "cpu") < 4000


# ------------------------------------------------------------------ sampling and augmentation
def test_sampler_batches_and_class_balanced_centring():
    image, labels = synthetic_volume(n=3, size=40)
    labels[:, :2, :2] = 3  # a tiny class: 4 pixels per slice
    sampler = SliceSampler(
        as_stack(image),
        {0: labels[0], 2: labels[2]},
        (0, 1, 2, 3),
        Normalization((0.0,), (255.0,)),
        patch_size=16,
        batch_size=64,
        foreground_fraction=1.0,
    )
    batch = sampler.batch(np.random.default_rng(0))
    assert batch["x"].shape == (64, 1, 16, 16) and batch["x"].dtype == torch.float32
    assert batch["y"].shape == (64, 16, 16) and batch["y"].dtype == torch.int64
    with_tiny = (batch["y"] == 3).flatten(1).any(1).float().mean().item()
    assert with_tiny > 0.2  # about a third of patches are centred on it, plus neighbours


def test_deep_supervision_trains_every_head_on_top_of_the_main_loss():
    image, labels = synthetic_volume(n=2, size=32)
    sampler = SliceSampler(
        as_stack(image), {0: labels[0]}, (0, 1, 2), Normalization((0.0,), (255.0,)),
        patch_size=32, batch_size=4,
    )  # fmt: skip
    objective = SupervisedObjective(sampler)
    batch = objective.batch(np.random.default_rng(0))
    torch.manual_seed(0)
    deep = build_model(ModelConfig(num_classes=3, base_channels=4, depth=4))
    plain = build_model(ModelConfig(num_classes=3, base_channels=4, depth=4,
                                    deep_supervision=False))  # fmt: skip
    plain.load_state_dict(deep.state_dict(), strict=False)  # the same main network
    deep.eval(), plain.eval()  # no dropout draws: the main heads give the same logits

    deep_loss, deep_terms = objective.loss(deep, batch)
    plain_loss, plain_terms = objective.loss(plain, batch)
    assert deep_terms == plain_terms  # the record shows the main head's terms
    assert deep_loss > plain_loss  # plus 1/2 and 1/4 of the two auxiliary heads' losses
    deep_loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in deep.parameters())


def test_patch_clamped_to_small_slices_and_optional_targets():
    image, labels = synthetic_volume(n=2, size=32)
    soft = np.random.default_rng(0).dirichlet(np.ones(3), size=(32, 32)).transpose(2, 0, 1)
    sampler = SliceSampler(
        as_stack(image[:, :20, :24]),
        {0: labels[0, :20, :24], 1: labels[1, :20, :24]},
        (0, 1, 2),
        Normalization((0.0,), (255.0,)),
        patch_size=128,
        batch_size=3,
        soft_targets={0: soft[:, :20, :24], 1: soft[:, :20, :24]},
        weights={0: np.full((20, 24), 0.5, np.float32)},
        augmentation=Augmentation(elastic=True, elastic_probability=1.0),
    )
    batch = sampler.batch(np.random.default_rng(1))
    assert batch["x"].shape == (3, 1, 20, 24)
    assert batch["soft"].shape == (3, 3, 20, 24)
    assert torch.allclose(batch["soft"].sum(1), torch.ones(3, 20, 24), atol=1e-4)
    assert batch["weight"].shape == (3, 20, 24)
    assert set(torch.unique(batch["weight"]).tolist()) <= {0.5, 1.0}
    assert set(torch.unique(batch["y"]).tolist()) <= {0, 1, 2}


def test_augmentation_moves_image_and_labels_together():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (16, 16))
    no_intensity = Augmentation(intensity_scale=0, intensity_shift=0, noise_std=0, elastic=True)
    for _ in range(10):
        patch = {"x": labels[None].astype(np.float32), "y": labels}
        out = augment(patch, no_intensity, rng)
        np.testing.assert_array_equal(np.rint(out["x"][0]), out["y"])


# ------------------------------------------------------------------ losses
def test_dice_loss_is_zero_for_a_confident_correct_prediction():
    target = torch.randint(0, 3, (2, 8, 8))
    logits = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(logits, target, 3).item() == pytest.approx(0.0, abs=1e-3)
    assert dice_loss(-logits, target, 3).item() > 0.9
    ignore = torch.ones_like(target, dtype=torch.bool)
    assert dice_loss(-logits, target, 3, ignore_mask=ignore).item() == 0.0


def test_class_weights_favour_rare_classes():
    labels = np.zeros((10, 10), np.int64)
    labels[0, :2] = 1
    weights = class_weights_from_labels([labels], 3)
    assert weights[1] > weights[0] and weights[2] == 1.0
    assert weights.min() >= 0.1 and weights.max() <= 10.0


def test_ce_dice_loss_ignores_masked_pixels():
    target = torch.zeros((1, 4, 4), dtype=torch.long)
    logits = torch.zeros((1, 2, 4, 4), requires_grad=True)
    weight = torch.zeros((1, 4, 4))
    loss, terms = ce_dice_loss(logits, target, 2, pixel_weight=weight, ignore_mask=weight == 0)
    assert loss.item() == 0.0 and set(terms) == {"ce", "dice"}
    loss, _ = ce_dice_loss(logits, target, 2)
    loss.backward()
    assert logits.grad is not None
