"""Reliability under rotation, zoom and elastic deformation (strategy ``mutual``): an
equivariant model agrees with itself inside the valid mask, pixels that leave the patch are
invalid, and the warps join the flips on schedule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from napari_distill.core.config import ModelConfig
from napari_distill.core.models import build_model
from napari_distill.core.strategies import MutualConfig
from napari_distill.core.strategies.mutual import MutualObjective, disagreement
from napari_distill.core.strategies.warps import COARSE_KNOTS, make_warp, warp

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32


def _parameters(angle: float = 0.0, zoom: float = 1.0, elastic: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    field = rng.normal(0.0, elastic, 2 * COARSE_KNOTS**2)
    return torch.tensor([[math.radians(angle), zoom, *field]], dtype=torch.float32)


def _smooth_image() -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    blob = torch.exp(-((rows - 12.0) ** 2 + (cols - 18.0) ** 2) / 60.0)
    return torch.stack([3 * blob, torch.sin(cols / 6.0), torch.cos(rows / 7.0)])[None]


class PerPixel(nn.Module):
    """A 1x1 convolution: equivariant to any resampling, up to interpolation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.conv.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class PositionBiased(PerPixel):
    """Not equivariant: adds a fixed image, so the disagreement cannot be 0 under a warp."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-3, 3, SIZE).view(1, 1, 1, SIZE)
        return self.conv(x) + torch.cat([ramp, -ramp, ramp * 0], dim=1)


TRANSFORMS = {
    "rotation": {"angle": 50.0},
    "zoom": {"zoom": 1.7},
    "elastic": {"elastic": 2.0},
    "all": {"angle": -35.0, "zoom": 1.4, "elastic": 2.0},
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
@pytest.mark.parametrize("flips", [(False, False), (True, False)])
def test_an_equivariant_model_agrees_with_itself_inside_the_valid_mask(name, flips):
    x = _smooth_image()
    transform = make_warp(_parameters(**TRANSFORMS[name]), SIZE, SIZE)
    model = PerPixel()
    u = disagreement(model, x, model(x), flips, torch.zeros_like(x), 0.0, transform)
    valid = u.isfinite()
    assert valid.float().mean() > 0.3
    assert float(u[valid].max()) < 2e-3
    biased = PositionBiased()
    u_biased = disagreement(biased, x, biased(x), flips, torch.zeros_like(x), 0.0, transform)
    assert float(u_biased[valid].max()) > 20 * float(u[valid].max()) + 1e-2


def test_the_valid_mask_excludes_pixels_that_leave_the_patch():
    x = _smooth_image()
    model = PerPixel()
    zeros = torch.zeros_like(x)
    rotated = disagreement(model, x, model(x), (False, False), zeros, 0.0,
                           make_warp(_parameters(angle=45.0), SIZE, SIZE))  # fmt: skip
    assert not rotated[0, 0, 0].isfinite() and not rotated[0, -1, -1].isfinite()  # corners
    assert rotated[0, SIZE // 2, SIZE // 2].isfinite()
    zoomed = disagreement(model, x, model(x), (False, False), zeros, 0.0,
                          make_warp(_parameters(zoom=2.0), SIZE, SIZE))  # fmt: skip
    finite = zoomed[0].isfinite()
    # zooming in by 2 shows the central half of the patch only: the outer ring is unseen
    assert finite[10:22, 10:22].all() and not finite[:6].any() and not finite[:, -6:].any()


def test_the_elastic_inverse_undoes_the_warp():
    x = _smooth_image()
    transform = make_warp(_parameters(angle=20.0, zoom=1.2, elastic=2.0, seed=3), SIZE, SIZE)
    back = warp(warp(x, transform.grid), transform.inverse)
    inside = warp(warp(torch.ones(1, 1, SIZE, SIZE), transform.grid), transform.inverse)
    valid = (inside[:, 0] > 0.999)[:, None].expand_as(x)
    assert valid.float().mean() > 0.3
    assert float((back - x).abs()[valid].max()) < 0.1


class FakeSampler:
    num_classes = 2

    def batch(self, rng):
        x = torch.from_numpy(rng.normal(size=(2, 1, 32, 32)).astype(np.float32))
        return {"x": x, "y": (x[:, 0] > 0).long()}


def test_warps_join_the_flips_on_schedule_and_the_loss_runs_with_them():
    config = MutualConfig(lambda_kd=1.0, ramp_share=0.2, warp_after=0.5)
    objective = MutualObjective(FakeSampler(), config)
    pair = build_model(ModelConfig(base_channels=4, depth=2, members=2))
    rng = np.random.default_rng(0)
    objective.before_step(4, 10)
    assert not objective.warping
    _, terms = objective.loss(pair, objective.batch(rng))
    assert terms["warped"] == 0.0
    objective.before_step(5, 10)
    assert objective.warping
    loss, terms = objective.loss(pair, objective.batch(rng))
    assert terms["warped"] == 1.0 and math.isfinite(float(loss)) and math.isfinite(terms["kd"])
    off = MutualObjective(
        FakeSampler(),
        MutualConfig(reliability_rotation=0, reliability_zoom=1, reliability_elastic=0),
    )
    off.before_step(9, 10)
    assert not off.warping
