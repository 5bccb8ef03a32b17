"""Resampled reliability augmentations for ``mutual``: rotation, zoom and elastic deformation.

RMD judges a pixel reliable when ``f(aug(x))`` agrees with ``aug(f(x))``. Flips are exact; a
rotation, a zoom or an elastic deformation resamples, so both sides are put on the same grid:
``aug`` is one sampling grid ``T`` (``aug(v)[p] = v[T(p)]``, bilinear, :func:`warp`) applied to
the image before the network and to the network's probabilities after it, and the disagreement
is measured there. It is then carried back to the original frame with the inverse grid, since
the pixels chosen for distillation are the patch's own. Pixels whose sample falls outside the
patch, on either way, are *invalid* and never chosen.

``T(p) = A (p + d(p))``: ``d`` a smooth elastic displacement (a coarse random field upsampled,
each control point moved at most :data:`MAX_KNOT_SHIFT` of their spacing),
``A`` a rotation by up to :attr:`MutualConfig.reliability_rotation` degrees and a zoom by a
factor in ``[1, reliability_zoom]`` (zooming in: the patch shows a magnified part of itself).
The inverse of the affine part is exact; the elastic part is inverted by a fixed-point
iteration, accurate for the small, smooth fields used here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

COARSE_KNOTS = 4  # the elastic field's control points per side: a few smooth bumps a patch
# A knot moves at most this share of the knot spacing: neighbours then differ by under a
# third of their distance, the bending never folds the patch, and it stays invertible.
MAX_KNOT_SHIFT = 0.15
INVERSE_ITERATIONS = 8
VALID = 0.999  # a pixel is valid when at least this much of its bilinear sample is inside


@dataclass(frozen=True)
class Warp:
    """A sampling grid and its inverse, ``(B, H, W, 2)`` in ``grid_sample``'s units."""

    grid: torch.Tensor
    inverse: torch.Tensor


def warp(values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """``values`` ``(B, C, H, W)`` sampled at ``grid`` (bilinear, zeros outside)."""
    return F.grid_sample(
        values.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def valid_mask(grid: torch.Tensor) -> torch.Tensor:
    """``(B, H, W)`` True where the sample at ``grid`` lies inside the patch."""
    ones = torch.ones(grid.shape[0], 1, *grid.shape[1:3], device=grid.device)
    return warp(ones, grid)[:, 0] >= VALID


def _identity(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    theta = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], device=device)
    return F.affine_grid(theta.expand(batch, 2, 3), [batch, 1, height, width], align_corners=False)


def _apply(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """``matrix`` ``(B, 2, 2)`` applied to ``points`` ``(B, H, W, 2)``."""
    return torch.einsum("bij,bhwj->bhwi", matrix, points)


def draw_parameters(
    rng: np.random.Generator, batch: int, rotation: float, zoom: float, elastic: float
) -> np.ndarray:
    """Per patch: angle (radians), zoom factor and a coarse elastic field (pixels), packed
    ``(B, 2 + 2 * COARSE_KNOTS**2)`` float32 so a batch carries them as one tensor."""
    angles = np.radians(rng.uniform(-rotation, rotation, batch))
    zooms = rng.uniform(1.0, max(zoom, 1.0), batch)
    field = rng.normal(0.0, elastic, (batch, 2 * COARSE_KNOTS**2)) if elastic > 0 else None
    if field is None:
        field = np.zeros((batch, 2 * COARSE_KNOTS**2))
    return np.column_stack([angles, zooms, field]).astype(np.float32)


def make_warp(parameters: torch.Tensor, height: int, width: int) -> Warp:
    """The grid ``T`` of :func:`draw_parameters`' values for ``(H, W)`` patches, and its inverse."""
    batch, device = parameters.shape[0], parameters.device
    angles, zooms = parameters[:, 0].float(), parameters[:, 1].float()
    # rotation in pixels, expressed in grid units (x by W / 2, y by H / 2)
    cos, sin = torch.cos(angles), torch.sin(angles)
    aspect = width / height
    matrix = (
        torch.stack(
            [torch.stack([cos, -sin / aspect], -1), torch.stack([sin * aspect, cos], -1)], -2
        )
        / zooms[:, None, None]
    )
    coarse = parameters[:, 2:].float().reshape(batch, 2, COARSE_KNOTS, COARSE_KNOTS)
    reach = MAX_KNOT_SHIFT * (min(height, width) - 1) / (COARSE_KNOTS - 1)
    coarse = coarse.clamp(-reach, reach)
    scale = torch.tensor([2.0 / width, 2.0 / height], device=device).view(1, 2, 1, 1)
    field = F.interpolate(coarse * scale, size=(height, width), mode="bicubic", align_corners=True)
    base = _identity(batch, height, width, device)
    grid = _apply(matrix, base + field.permute(0, 2, 3, 1))
    # inverse: r = A^-1 q, then s + d(s) = r by fixed point
    target = _apply(torch.linalg.inv(matrix), base)
    inverse = target
    for _ in range(INVERSE_ITERATIONS):
        displacement = F.grid_sample(
            field, inverse, mode="bilinear", padding_mode="border", align_corners=False
        )
        inverse = target - displacement.permute(0, 2, 3, 1)
    return Warp(grid, inverse)


def warped_disagreement(
    augmented_probabilities: torch.Tensor, probabilities: torch.Tensor, transform: Warp
) -> torch.Tensor:
    """``u`` per pixel ``(B, H, W)`` in the original frame, ``inf`` where invalid.

    ``augmented_probabilities`` is ``f(aug(x))`` (on the grid), ``probabilities`` ``f(x)``.
    """
    moved = warp(probabilities, transform.grid)
    on_grid = (augmented_probabilities.float() - moved).pow(2).sum(dim=1, keepdim=True)
    back = warp(on_grid, transform.inverse)[:, 0]
    inside = valid_mask(transform.grid).float()[:, None]
    valid = warp(inside, transform.inverse)[:, 0] >= VALID
    return torch.where(valid, back, torch.full_like(back, math.inf))
