"""The cells of a synthetic Pap smear field: stains, shapes, nuclei and debris.

Each :class:`Cell` carries its cytoplasm and nucleus masks and its optical density (Beer-Lambert,
per stain and colour channel) in a bounding box; :mod:`.samples_pap` places cells in a field,
renders the light that passes through and derives the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw

PAP_PIXEL_UM = 0.5

# Optical density per unit of stain, (R, G, B).
EOSIN = np.array([0.10, 0.60, 0.28], np.float32)
ORANGE = np.array([0.04, 0.30, 0.80], np.float32)
LIGHT_GREEN = np.array([0.60, 0.17, 0.30], np.float32)
HAEMATOXYLIN = np.array([0.85, 1.00, 0.42], np.float32)

# Cell types: cell radius and nucleus radius in micrometres, cytoplasm thickness (optical
# density scale), chance of eosinophilic (pink/orange) cytoplasm, nucleus kind, share of cells.
CELL_TYPES = {
    "superficial": ((21.0, 29.0), (2.2, 3.0), (0.3, 0.5), 0.75, "pyknotic", 0.42),
    "intermediate": ((18.0, 25.0), (3.5, 4.5), (0.4, 0.6), 0.2, "vesicular", 0.34),
    "parabasal": ((9.0, 12.0), (4.0, 5.0), (0.75, 0.95), 0.05, "vesicular", 0.1),
    "neutrophil": ((4.5, 5.5), (1.3, 1.7), (0.15, 0.25), 0.3, "lobed", 0.14),
}
# Cells (squamous and parabasal) per square millimetre of smear, before per-field variation.
CELLS_PER_MM2 = 520.0


def cell_box(origin: tuple[int, int], shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The field region of a bounding box."""
    return slice(origin[0], origin[0] + shape[0]), slice(origin[1], origin[1] + shape[1])


@dataclass
class Cell:
    """One cell in a field: its masks live in a bounding box at ``origin``."""

    origin: tuple[int, int]
    cytoplasm: np.ndarray  # bool, bounding box
    nucleus: np.ndarray | None  # bool, same box
    density: np.ndarray  # (h, w, 3) optical density, same box


def _polygon_mask(rng, centre, radius, n_vertices, roundness, shape) -> tuple[tuple, np.ndarray]:
    """A jittered polygon (an irregular ellipse when ``roundness`` is high) inside ``shape``."""
    step = 2 * np.pi / n_vertices
    angles = np.arange(n_vertices) * step + rng.uniform(-0.3, 0.3, n_vertices) * step
    angles += rng.uniform(0, step)
    aspect = rng.uniform(1.0, 1.45 if roundness < 0.5 else 1.2)
    tilt = rng.uniform(0, np.pi)
    radii = radius * (1 + rng.uniform(-0.15, 0.15, n_vertices) * (1 - roundness * 0.7))
    ys = radii * np.sin(angles) * aspect
    xs = radii * np.cos(angles) / aspect
    rows = centre[0] + ys * np.cos(tilt) - xs * np.sin(tilt)
    cols = centre[1] + ys * np.sin(tilt) + xs * np.cos(tilt)
    margin = 8
    top = max(int(rows.min()) - margin, 0)
    left = max(int(cols.min()) - margin, 0)
    bottom = min(int(np.ceil(rows.max())) + margin, shape[0])
    right = min(int(np.ceil(cols.max())) + margin, shape[1])
    mask = np.zeros((max(bottom - top, 1), max(right - left, 1)), bool)
    rr, cc = draw.polygon(rows - top, cols - left, mask.shape)
    mask[rr, cc] = True
    return (top, left), mask


def _nucleus_mask(rng, box_shape, centre, radius, kind) -> np.ndarray:
    """An ellipse, or three small overlapping lobes for a neutrophil."""
    mask = np.zeros(box_shape, bool)
    lobes = [(0.0, 0.0)] if kind != "lobed" else [(-1.4, -0.6), (0.2, 1.3), (1.4, -0.5)]
    for dy, dx in lobes:
        r_major = radius * rng.uniform(1.0, 1.3)
        rr, cc = draw.ellipse(
            centre[0] + dy * radius,
            centre[1] + dx * radius,
            r_major,
            radius,
            shape=box_shape,
            rotation=rng.uniform(0, np.pi),
        )
        mask[rr, cc] = True
    return mask


def make_cell(rng, kind, centre, field_shape, stains, textures) -> Cell:
    """Masks and optical density of one cell of type ``kind`` centred at ``centre``."""
    (r_lo, r_hi), (n_lo, n_hi), (t_lo, t_hi), p_eosin, nucleus_kind, _ = CELL_TYPES[kind]
    radius = rng.uniform(r_lo, r_hi) / PAP_PIXEL_UM
    squamous = kind in ("superficial", "intermediate")
    n_vertices = int(rng.integers(5, 9)) if squamous else 24
    origin, cytoplasm = _polygon_mask(
        rng, centre, radius, n_vertices, 0.0 if squamous else 0.8, field_shape
    )
    box = cell_box(origin, cytoplasm.shape)
    coarse, fine = (t[box] for t in textures[:2])
    # Thickness: uneven, thicker at the rim, sometimes a fold across a thin superficial cell.
    depth = ndimage.distance_transform_edt(cytoplasm)
    thickness = rng.uniform(t_lo, t_hi) * (0.9 + 0.2 * coarse + 0.07 * fine)
    thickness = thickness * (1 + 0.35 * np.exp(-depth / 2.5)) * cytoplasm
    if squamous and rng.random() < 0.35:
        angle = rng.uniform(0, np.pi)
        yy, xx = np.indices(cytoplasm.shape)
        offset = rng.uniform(-0.5, 0.5) * radius
        yy, xx = yy + origin[0] - centre[0], xx + origin[1] - centre[1]
        chord = yy * np.cos(angle) - xx * np.sin(angle)
        fold = (np.abs(chord - offset) < 2.0) * cytoplasm
        thickness = thickness + 0.45 * rng.uniform(0.6, 1.0) * fold
    if rng.random() < p_eosin:
        mix = rng.uniform(0.0, 1.0)
        stain = (1 - mix) * stains["eosin"] + mix * stains["orange"]
    else:
        stain = stains["light green"] * rng.uniform(0.85, 1.15)
    density = thickness[..., None] * stain
    nucleus = None
    if nucleus_kind:
        n_radius = rng.uniform(n_lo, n_hi) / PAP_PIXEL_UM
        jitter = rng.uniform(-0.2, 0.2, 2) * radius
        local = (centre[0] - origin[0] + jitter[0], centre[1] - origin[1] + jitter[1])
        nucleus = _nucleus_mask(rng, cytoplasm.shape, local, n_radius, nucleus_kind) & cytoplasm
        density = density + _nucleus_density(rng, nucleus, nucleus_kind, fine, stains)
    return Cell(origin, cytoplasm, nucleus, density.astype(np.float32))


def _nucleus_density(rng, mask, kind, fine, stains) -> np.ndarray:
    """Haematoxylin density: dense and even when pyknotic, granular chromatin otherwise."""
    if kind == "pyknotic":
        strength = rng.uniform(1.5, 2.0) * (1 + 0.05 * fine)
    else:
        strength = rng.uniform(0.8, 1.1) * (1 + 0.28 * fine) + 0.5 * (fine > 1.1)
        rim = ndimage.distance_transform_edt(mask) < 1.5  # nuclear membrane
        strength = strength + 0.35 * rim
    return (strength * mask)[..., None] * stains["haematoxylin"]


def field_stains(rng) -> dict[str, np.ndarray]:
    """Stain vectors of one field: strength and hue vary from slide to slide."""
    vary = lambda v: v * rng.uniform(0.85, 1.2) * rng.uniform(0.9, 1.1, 3)  # noqa: E731
    return {
        "eosin": vary(EOSIN),
        "orange": vary(ORANGE),
        "light green": vary(LIGHT_GREEN),
        "haematoxylin": vary(HAEMATOXYLIN),
    }


def free_nuclei(rng, field_shape, stains, textures, nuclei_centres) -> list[Cell]:
    """Bare nuclei (cytoplasm lost); their ``cytoplasm`` is just the box, never a cell mask."""
    free: list[Cell] = []
    area = field_shape[0] * field_shape[1] * (PAP_PIXEL_UM / 1000) ** 2
    for _ in range(int(rng.poisson(60 * area)) + 1):
        radius = rng.uniform(3.5, 5.0) / PAP_PIXEL_UM
        centre = rng.uniform(radius, np.array(field_shape) - radius)
        if any(
            np.hypot(centre[0] - y, centre[1] - x) < radius + r + 3 for y, x, r in nuclei_centres
        ):
            continue
        size = int(np.ceil(radius * 1.4)) + 3
        top, left = (max(int(c) - size, 0) for c in centre)
        bottom = min(int(centre[0]) + size, field_shape[0])
        right = min(int(centre[1]) + size, field_shape[1])
        box_shape = (bottom - top, right - left)
        mask = _nucleus_mask(
            rng, box_shape, (centre[0] - top, centre[1] - left), radius, "vesicular"
        )
        fine = textures[1][top:bottom, left:right]
        density = _nucleus_density(rng, mask, "vesicular", fine, stains)
        free.append(Cell((top, left), np.ones(box_shape, bool), mask, density.astype(np.float32)))
        nuclei_centres.append((centre[0], centre[1], radius))
    return free


def debris(rng, field_shape, stains, focus) -> np.ndarray:
    """Small dark specks (bacteria clumps, stain precipitate): unlabelled background."""
    specks = np.zeros(field_shape, np.float32)
    area = field_shape[0] * field_shape[1] * (PAP_PIXEL_UM / 1000) ** 2
    count = int(rng.poisson(500 * area))
    # Specks come alone or in small clumps, of varied size and darkness.
    clumps = rng.integers(1, 6, count)
    rows = np.repeat(rng.uniform(0, field_shape[0], count), clumps)
    cols = np.repeat(rng.uniform(0, field_shape[1], count), clumps)
    rows = np.clip(rows + rng.normal(0, 3, rows.size), 0, field_shape[0] - 1).astype(int)
    cols = np.clip(cols + rng.normal(0, 3, cols.size), 0, field_shape[1] - 1).astype(int)
    specks[rows, cols] = np.minimum(rng.exponential(2.5, rows.size), 6)
    specks = ndimage.grey_dilation(specks, size=(2, 2))
    specks = ndimage.gaussian_filter(specks, focus + 0.4)
    tint = 0.6 * stains["haematoxylin"] + 0.4 * stains["orange"]
    return specks[..., None] * tint / tint.max()
