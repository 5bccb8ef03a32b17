"""Strategy mean-teacher (MMT-PSM) on tiny tensors, and a short run that lowers its loss."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_distill.core.inference.cells import fields_as_input
from napari_distill.core.models.cells import CellModelConfig
from napari_distill.core.samples import make_pap_smear
from napari_distill.core.strategies.cell_configs import MeanTeacherConfig
from napari_distill.core.strategies.mean_teacher import (
    MeanTeacherObjective,
    ema_decay,
    ema_update,
    make_views,
    mgd_loss,
    mine_samples,
    ramp_up,
    teacher_target,
)
from napari_distill.core.training.cells import (
    CellTrainConfig,
    CellTrainingRun,
    SupervisedCellObjective,
    new_cell_model,
)
from napari_distill.core.training.cells_data import measure_geometry, prepare_cell_data


def test_ema_decay_and_update():
    assert ema_decay(0) == 0.0
    assert ema_decay(1) == 0.5
    assert ema_decay(10_000) == 0.99
    teacher, student = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    teacher.weight.data.fill_(1.0)
    student.weight.data.fill_(3.0)
    ema_update(teacher, student, 0.75)
    assert teacher.weight.item() == pytest.approx(0.75 * 1 + 0.25 * 3)


def test_the_average_starts_when_the_warm_up_ends():
    assert [ema_decay(s, 0.99, warmup=3) for s in range(3)] == [0.0, 0.0, 0.0]
    assert ema_decay(3, 0.99, warmup=3) == 0.0  # the first step after: the student itself
    assert ema_decay(4, 0.99, warmup=3) == 0.5
    assert ema_decay(10_000, 0.99, warmup=3) == 0.99


def test_the_objective_averages_from_the_warmed_up_student(tiny_cells):
    data, config, train, _ = tiny_cells
    student = new_cell_model(config, 0)
    settings = MeanTeacherConfig(warmup_steps=2)
    objective = MeanTeacherObjective(
        SupervisedCellObjective(data, config, train), student, [torch.zeros(1, 8, 8)], settings
    )
    first = nn.utils.parameters_to_vector(student.parameters()).detach().clone()
    for step in range(3):  # two warm-up steps and the first one after: a = 0
        with torch.no_grad():
            for p in student.parameters():
                p.add_(1.0)
        objective.after_step(step, 10)
    warmed = nn.utils.parameters_to_vector(student.parameters()).detach().clone()
    teacher = nn.utils.parameters_to_vector(objective.teacher.parameters())
    assert torch.allclose(teacher, warmed) and not torch.allclose(teacher, first)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(2.0)
    objective.after_step(3, 10)  # a = 1/2: halfway to the student
    teacher = nn.utils.parameters_to_vector(objective.teacher.parameters())
    assert torch.allclose(teacher, warmed + 1.0)


def test_ramp_up_is_zero_in_warm_up_then_sigmoid_to_one():
    assert ramp_up(4, warmup=5, length=10) == 0.0
    assert ramp_up(5, 5, 10) == pytest.approx(math.exp(-5))
    assert ramp_up(10, 5, 10) == pytest.approx(math.exp(-5 * 0.25))
    assert ramp_up(15, 5, 10) == 1.0 and ramp_up(99, 5, 10) == 1.0


def test_sample_mining_keeps_all_foreground_and_half_as_much_of_the_most_sensitive_background():
    target = torch.zeros(1, 2, 4, 4)
    target[:, 0] = 1
    target[0, :, 0, :] = torch.tensor([0.0, 1.0])[:, None]  # row 0: 4 foreground pixels
    sensitive = torch.arange(16, dtype=torch.float32).reshape(1, 4, 4)
    weights = mine_samples(target, sensitive, ratio=0.5, mined_weight=1.5)
    assert torch.all(weights[0, 0] == 1.0)
    mined = weights == 1.5
    assert int(mined.sum()) == 2  # 4 foreground : 2 background
    assert mined[0, 3, 3] and mined[0, 3, 2]  # the two most sensitive


def test_views_map_back_to_the_original_frame():
    net = nn.Conv2d(1, 2, 1)

    class Wrap(nn.Module):
        def forward(self, x):
            return net(x), [x]

    x = torch.rand(1, 1, 4, 6)
    views = make_views(x, 1, 2, True, 0.0, np.random.default_rng(0))
    assert len(views) == 4
    target, probs, features = teacher_target(Wrap(), views, 0.5)
    assert torch.allclose(probs[0], probs[1], atol=1e-6)  # flipped view mapped back
    assert torch.allclose(features[0], x, atol=1e-6)
    soft = torch.softmax(net(x), 1)
    assert target.max() >= soft.max()  # sharpened


def test_mask_guided_loss_is_zero_outside_the_mask_and_spares_the_teacher():
    adaptors = nn.ModuleList([nn.Conv2d(2, 2, 1)])
    student = torch.rand(1, 2, 4, 4, requires_grad=True)
    teacher = torch.rand(1, 2, 4, 4, requires_grad=True)
    nothing = torch.zeros(1, 4, 4)
    assert mgd_loss([student], [teacher], adaptors, nothing).item() == 0.0
    mask = torch.zeros(1, 4, 4)
    mask[0, :2] = 1
    loss = mgd_loss([student], [teacher], adaptors, mask)
    loss.backward()
    assert loss.item() > 0
    assert teacher.grad is None
    assert torch.all(student.grad[0, :, 2:] == 0) and student.grad[0, :, :2].abs().sum() > 0


@pytest.fixture
def tiny_cells():
    """Cell data of two painted 64 x 64 grey fields (the third kept apart), a tiny model's
    settings and a short run's settings."""
    sample = make_pap_smear(n_fields=3, field_shape=(64, 64), seed=2)
    fields = fields_as_input(sample.image.mean(-1), rgb=False)
    planes = sample.cytoplasm_planes.transpose(1, 0, 2, 3)
    data = prepare_cell_data(fields, planes, sample.nuclei, [0, 1])
    config = measure_geometry(data, CellModelConfig(width=4, depth=2, crop_size=16))
    train = CellTrainConfig(
        steps=30, patch_size=64, nucleus_batch=2, cell_batch=4, seed=0, learning_rate=5e-3
    )
    return data, config, train, fields


def test_a_short_mean_teacher_run_lowers_its_loss(one_torch_thread, tiny_cells):
    torch.manual_seed(0)
    data, config, train, fields = tiny_cells
    student = new_cell_model(config, 0)
    # Full weight from the first step, so that the losses of the first and last steps compare.
    settings = MeanTeacherConfig(rampup_steps=0, unlabeled_patches=1, unlabeled_windows=2)
    objective = MeanTeacherObjective(
        SupervisedCellObjective(data, config, train),
        student,
        [torch.from_numpy(fields[2])],
        settings,
    )
    run = CellTrainingRun(student, objective, train)
    losses = [r.loss for r in run.steps()]
    assert run.history[-1].phase == "mean-teacher" and "psm" in run.history[-1].logs
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    off = dataclasses.replace(settings, mining=False, mask_guided=False)
    assert not off.mining  # the ablations are settings


def test_adaptors_start_as_the_identity_so_equal_features_cost_nothing():
    from napari_distill.core.strategies.mean_teacher import identity_adaptor

    features = torch.rand(1, 4, 3, 3)
    mask = torch.ones(1, 3, 3)
    loss = mgd_loss([features], [features.clone()], nn.ModuleList([identity_adaptor(4)]), mask)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)


def test_settings_have_tooltips():
    for field in dataclasses.fields(MeanTeacherConfig):
        assert field.metadata.get("help"), field.name
    with pytest.raises(ValueError):
        MeanTeacherConfig(ema_decay=1.0)
