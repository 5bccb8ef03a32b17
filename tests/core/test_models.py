"""The U-Net: any input size, features for distillation, dropout and normalisation choices."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_distill.core.config import ModelConfig
from napari_distill.core.models import (
    UNet,
    build_model,
    count_parameters,
    enable_dropout,
    norm_groups,
)

torch.set_num_threads(2)


@pytest.fixture
def model() -> UNet:
    torch.manual_seed(0)
    return build_model(
        ModelConfig(in_channels=3, num_classes=4, base_channels=8, depth=3, norm="group")
    )


@pytest.mark.parametrize("shape", [(37, 53), (48, 48), (5, 9), (64, 17)])
def test_any_input_size_gives_logits_of_that_size(model, shape):
    x = torch.randn(2, 3, *shape)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 4, *shape)
    assert torch.isfinite(logits).all()


def test_features_are_decoder_maps_coarsest_first(model):
    x = torch.randn(1, 3, 37, 53)
    with torch.no_grad():
        logits, features = model(x, return_features=True)
    assert logits.shape == (1, 4, 37, 53)
    assert len(features) == model.config.depth == 3
    assert [f.shape[1] for f in features] == list(model.feature_channels) == [32, 16, 8]
    assert features[-1].shape[-2:] == (37, 53)
    assert features[1].shape[-2:] == (19, 27)  # ceil(37 / 2), ceil(53 / 2)
    assert features[0].shape[-2:] == (10, 14)


def test_batch_size_one_trains_with_group_norm(model):
    model.train()
    x = torch.randn(1, 3, 24, 24)
    logits, features = model(x, return_features=True)
    loss = logits.logsumexp(1).mean()
    for auxiliary in model.auxiliary_logits(features):
        loss = loss + auxiliary.logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_deep_supervision_heads_segment_each_intermediate_decoder_level():
    model = build_model(ModelConfig(in_channels=1, num_classes=3, base_channels=4, depth=4))
    x = torch.randn(2, 1, 37, 53)
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        auxiliary = model.auxiliary_logits(features)
    # finest first: 1/2 then 1/4 of the input (rounded up); neither bottleneck nor full size
    assert [a.shape for a in auxiliary] == [(2, 3, 19, 27), (2, 3, 10, 14)]
    assert logits.shape == (2, 3, 37, 53)


def test_deep_supervision_changes_nothing_at_prediction():
    torch.manual_seed(0)
    plain = build_model(
        ModelConfig(num_classes=3, base_channels=4, depth=3, deep_supervision=False)
    )
    deep = build_model(ModelConfig(num_classes=3, base_channels=4, depth=3))
    assert len(plain.auxiliary_heads) == 0 and len(deep.auxiliary_heads) == 1
    missing, unexpected = deep.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(key.startswith("auxiliary_heads.") for key in missing)
    assert not unexpected
    x = torch.randn(2, 1, 24, 24)
    plain.eval(), deep.eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(x), deep(x))
    assert plain.auxiliary_logits(plain(x, return_features=True)[1]) == []


def test_batch_norm_variant():
    model = build_model(ModelConfig(num_classes=2, base_channels=8, depth=2, norm="batch"))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 20, 20)).shape == (1, 2, 20, 20)


def test_norm_groups_divide_channels():
    for channels in (4, 6, 8, 12, 16, 24, 64, 128, 256):
        groups = norm_groups(channels)
        assert channels % groups == 0 and 1 <= groups <= 32


def test_test_time_dropout_varies_predictions():
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=3, base_channels=8, depth=3, dropout=0.5)).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))  # eval: deterministic
        assert enable_dropout(model) > 0
        first, second = model(x), model(x)
    assert not torch.equal(first, second)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.GroupNorm))


def test_no_dropout_when_zero():
    model = build_model(ModelConfig(base_channels=4, depth=2, dropout=0.0))
    assert enable_dropout(model) == 0


def test_parameter_count_grows_with_width():
    small = count_parameters(build_model(ModelConfig(base_channels=8, depth=3)))
    large = count_parameters(build_model(ModelConfig(base_channels=16, depth=3)))
    assert 0 < small < large


def test_student_config_is_never_larger_than_its_teacher():
    default = ModelConfig(num_classes=3)
    student = default.student()
    assert student.base_channels == default.base_channels // 2
    assert student.depth == default.depth - 1
    assert default.deep_supervision and not student.deep_supervision  # KD uses the main head
    shallow = ModelConfig(num_classes=3, base_channels=4, depth=2)
    assert shallow.student().depth == 2  # never deeper than a depth-2 teacher
    assert shallow.student().base_channels == 4


@pytest.mark.parametrize("factor", [2, 3])
@pytest.mark.parametrize("shape", [(37, 53), (48, 48), (5, 9)])
def test_a_downsampling_network_answers_at_the_input_size(shape, factor):
    torch.manual_seed(0)
    config = ModelConfig(num_classes=4, base_channels=8, depth=3, downsample=factor)
    network = build_model(config).eval()
    assert network.size_multiple == 4 * factor  # tiles align with its block grid
    with torch.no_grad():
        logits, features = network(torch.randn(2, 1, *shape), return_features=True)
    assert logits.shape == (2, 4, *shape)
    working = (-(-shape[0] // factor), -(-shape[1] // factor))
    assert features[-1].shape[-2:] == working  # the decoder works at the reduced scale
    assert len(network.auxiliary_logits(features)) == 1


def test_a_downsampling_network_sees_block_means_only():
    """Detail inside each 2 x 2 block (zero mean per block) changes nothing at half scale,
    and changes the output of the same network at full scale."""
    torch.manual_seed(0)
    x = torch.randn(1, 1, 32, 32)
    noise = torch.randn(1, 1, 32, 32)
    block_means = F.avg_pool2d(noise, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
    detail = noise - block_means
    outputs = {}
    for factor in (1, 2):
        torch.manual_seed(0)
        config = ModelConfig(num_classes=3, base_channels=8, depth=3, downsample=factor)
        network = build_model(config).eval()
        with torch.no_grad():
            outputs[factor] = (network(x), network(x + detail))
    assert torch.allclose(*outputs[2], atol=1e-5)
    assert not torch.allclose(*outputs[1], atol=1e-3)


@pytest.mark.parametrize("factor", [0, 9])
def test_downsample_outside_one_to_eight_is_refused(factor):
    with pytest.raises(ValueError, match="whole factor between 1 and 8"):
        ModelConfig(downsample=factor)
