"""Seeded synthetic Papanicolaou-stained cervical smear fields with instance ground truth.

Fields are rendered as bright-field transmission images: every cell adds optical density
(Beer-Lambert), so translucent cytoplasm that overlaps looks darker, as under a microscope.
Stains are modelled by their optical density per colour channel: eosin / orange G (pink and
orange, superficial cells), light green (blue-green, intermediate and parabasal cells) and
haematoxylin (blue-purple nuclei). Each field gets its own staining strength, background and
focus; each cell its own blur, as if lying at a slightly different depth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw

logger = logging.getLogger(__name__)

PAP_CLASSES: dict[int, str] = {1: "cytoplasm", 2: "nucleus"}
PAP_PIXEL_UM = 0.5
MIN_FIELD = 64

# Optical density per unit of stain, (R, G, B).
_EOSIN = np.array([0.10, 0.60, 0.28], np.float32)
_ORANGE = np.array([0.04, 0.30, 0.80], np.float32)
_LIGHT_GREEN = np.array([0.60, 0.17, 0.30], np.float32)
_HAEMATOXYLIN = np.array([0.85, 1.00, 0.42], np.float32)

# Cell types: cell radius and nucleus radius in micrometres, cytoplasm thickness (optical
# density scale), chance of eosinophilic (pink/orange) cytoplasm, nucleus kind, share of cells.
_CELL_TYPES = {
    "superficial": ((21.0, 29.0), (2.2, 3.0), (0.3, 0.5), 0.75, "pyknotic", 0.42),
    "intermediate": ((18.0, 25.0), (3.5, 4.5), (0.4, 0.6), 0.2, "vesicular", 0.34),
    "parabasal": ((9.0, 12.0), (4.0, 5.0), (0.75, 0.95), 0.05, "vesicular", 0.1),
    "neutrophil": ((4.5, 5.5), (1.3, 1.7), (0.15, 0.25), 0.3, "lobed", 0.14),
}
# Cells (squamous and parabasal) per square millimetre of smear, before per-field variation.
_CELLS_PER_MM2 = 520.0


@dataclass(frozen=True, eq=False)
class PapSample:
    """Synthetic Pap smear fields with semantic and instance ground truth.

    Attributes
    ----------
    image:
        ``(N, H, W, 3)`` uint8 RGB fields.
    semantic_full:
        ``(N, H, W)`` uint8: 0 background, 1 cytoplasm, 2 nucleus (a nucleus wins).
    labels_sparse:
        ``semantic_full`` on the ``annotated`` fields, zero elsewhere.
    annotated:
        Indices of the annotated fields (ascending).
    nuclei:
        ``(N, H, W)`` uint16 nucleus instance ids, unique within a field.
    cytoplasm_planes:
        ``(P, N, H, W)`` uint16 whole-cell masks; each cell is in exactly one plane with its full
        (overlap-kept) mask, and cells in one plane do not overlap. Cell ``k`` has nucleus id
        ``k`` when it has a nucleus; free nuclei have ids above every cell's.
    cell_to_nucleus:
        Per field, cell id -> nucleus id (0 for a cell without a nucleus).
    class_names:
        Name of every semantic class id.
    scale:
        Pixel size ``(y, x)`` in micrometres.
    """

    image: np.ndarray
    semantic_full: np.ndarray
    labels_sparse: np.ndarray
    annotated: np.ndarray
    nuclei: np.ndarray
    cytoplasm_planes: np.ndarray
    cell_to_nucleus: list[dict[int, int]]
    class_names: dict[int, str]
    scale: tuple[float, float]


def _box(origin: tuple[int, int], shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The field region of a bounding box."""
    return slice(origin[0], origin[0] + shape[0]), slice(origin[1], origin[1] + shape[1])


@dataclass
class _Cell:
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


def _make_cell(rng, kind, centre, field_shape, stains, textures) -> _Cell:
    """Masks and optical density of one cell of type ``kind`` centred at ``centre``."""
    (r_lo, r_hi), (n_lo, n_hi), (t_lo, t_hi), p_eosin, nucleus_kind, _ = _CELL_TYPES[kind]
    radius = rng.uniform(r_lo, r_hi) / PAP_PIXEL_UM
    squamous = kind in ("superficial", "intermediate")
    n_vertices = int(rng.integers(5, 9)) if squamous else 24
    origin, cytoplasm = _polygon_mask(
        rng, centre, radius, n_vertices, 0.0 if squamous else 0.8, field_shape
    )
    box = _box(origin, cytoplasm.shape)
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
    return _Cell(origin, cytoplasm, nucleus, density.astype(np.float32))


def _nucleus_density(rng, mask, kind, fine, stains) -> np.ndarray:
    """Haematoxylin density: dense and even when pyknotic, granular chromatin otherwise."""
    if kind == "pyknotic":
        strength = rng.uniform(1.5, 2.0) * (1 + 0.05 * fine)
    else:
        strength = rng.uniform(0.8, 1.1) * (1 + 0.28 * fine) + 0.5 * (fine > 1.1)
        rim = ndimage.distance_transform_edt(mask) < 1.5  # nuclear membrane
        strength = strength + 0.35 * rim
    return (strength * mask)[..., None] * stains["haematoxylin"]


def _field_stains(rng) -> dict[str, np.ndarray]:
    """Stain vectors of one field: strength and hue vary from slide to slide."""
    vary = lambda v: v * rng.uniform(0.85, 1.2) * rng.uniform(0.9, 1.1, 3)  # noqa: E731
    return {
        "eosin": vary(_EOSIN),
        "orange": vary(_ORANGE),
        "light green": vary(_LIGHT_GREEN),
        "haematoxylin": vary(_HAEMATOXYLIN),
    }


def _place(rng, field_shape, cells_so_far, nuclei_centres, clustered) -> tuple[float, float]:
    """A cell centre: free, or (clumped smears) overlapping a cell already placed."""
    if clustered and cells_so_far:
        anchor = cells_so_far[int(rng.integers(len(cells_so_far)))]
        distance = rng.uniform(0.35, 0.9) * anchor[1]
        angle = rng.uniform(0, 2 * np.pi)
        return anchor[0][0] + distance * np.sin(angle), anchor[0][1] + distance * np.cos(angle)
    return rng.uniform(0, field_shape[0]), rng.uniform(0, field_shape[1])


def _render_field(rng, field_shape) -> tuple[np.ndarray, list[_Cell], list[_Cell]]:
    """One field: the RGB image, its cells (drawn order) and its free nuclei."""
    h, w = field_shape
    stains = _field_stains(rng)
    textures = []
    for sigma in (5.0, 0.9, 30.0):
        noise = ndimage.gaussian_filter(rng.standard_normal(field_shape, dtype=np.float32), sigma)
        textures.append(noise / (noise.std() + 1e-6))
    area_mm2 = h * w * (PAP_PIXEL_UM / 1000) ** 2
    crowding = rng.uniform(0.7, 1.4)
    n_cells = max(2, int(rng.poisson(_CELLS_PER_MM2 * area_mm2 * crowding)))
    kinds = list(_CELL_TYPES)
    shares = np.array([t[-1] for t in _CELL_TYPES.values()])
    cells: list[_Cell] = []
    placed: list[tuple[tuple[float, float], float]] = []
    nuclei_centres: list[tuple[float, float, float]] = []
    for index in range(n_cells * 4):  # rejected placements get retried, up to a point
        if len(cells) >= n_cells:
            break
        kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
        clustered = index > 0 and rng.random() < 0.55
        centre = _place(rng, field_shape, placed, nuclei_centres, clustered)
        cell = _make_cell(rng, kind, centre, field_shape, stains, textures)
        if cell.nucleus is None or not cell.nucleus.any() or not cell.cytoplasm.any():
            continue
        cy, cx = (
            np.mean(i) + o for i, o in zip(np.nonzero(cell.nucleus), cell.origin, strict=True)
        )
        n_r = np.sqrt(cell.nucleus.sum() / np.pi)
        if any(np.hypot(cy - y, cx - x) < n_r + r + 3 for y, x, r in nuclei_centres):
            continue  # nuclei of overlapping cells lie at different depths but rarely overlap
        cells.append(cell)
        placed.append((centre, np.sqrt(cell.cytoplasm.sum() / np.pi)))
        nuclei_centres.append((cy, cx, n_r))
    free = _free_nuclei(rng, field_shape, stains, textures, nuclei_centres)
    density = np.zeros((h, w, 3), np.float32)
    focus = rng.uniform(0.3, 1.1)
    for item in (*cells, *free):
        blur = focus + (rng.uniform(0, 0.8) if rng.random() < 0.85 else rng.uniform(1.5, 2.8))
        box = _box(item.origin, item.cytoplasm.shape)
        density[box] += ndimage.gaussian_filter(item.density, (blur, blur, 0))
    density += _debris(rng, field_shape, stains, focus)
    background = np.array([236, 234, 240], np.float32) * rng.uniform(0.96, 1.02, 3)
    # Slightly uneven illumination, faint pink mucus haze, camera noise.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 1 - 0.06 * (((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2)
    haze = (
        np.clip(textures[2], 0, None)[..., None]
        * 0.025
        * stains["light green"]
        / _LIGHT_GREEN.max()
    )
    light = background * vignette[..., None] * np.exp(-(density + haze))
    light += rng.normal(0, 1.8, light.shape).astype(np.float32)
    return np.clip(np.round(light), 0, 255).astype(np.uint8), cells, free


def _free_nuclei(rng, field_shape, stains, textures, nuclei_centres) -> list[_Cell]:
    """Bare nuclei (cytoplasm lost); their ``cytoplasm`` is just the box, never a cell mask."""
    free: list[_Cell] = []
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
        free.append(_Cell((top, left), np.ones(box_shape, bool), mask, density.astype(np.float32)))
        nuclei_centres.append((centre[0], centre[1], radius))
    return free


def _debris(rng, field_shape, stains, focus) -> np.ndarray:
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


def _planes(cells: list[_Cell], field_shape) -> list[list[int]]:
    """Greedy colouring of the overlap graph: cell indices per plane, no overlaps within one."""
    full = []
    for cell in cells:
        mask = np.zeros(field_shape, bool)
        box = _box(cell.origin, cell.cytoplasm.shape)
        mask[box] = cell.cytoplasm
        full.append(mask)
    planes: list[list[int]] = []
    occupied: list[np.ndarray] = []
    for index, mask in enumerate(full):
        for plane, taken in zip(planes, occupied, strict=True):
            if not np.any(taken & mask):
                plane.append(index)
                taken |= mask
                break
        else:
            planes.append([index])
            occupied.append(mask.copy())
    return planes


def _field_labels(cells: list[_Cell], free: list[_Cell], field_shape) -> tuple:
    """Semantic labels, nucleus ids, cytoplasm planes and cell -> nucleus ids of one field."""
    semantic = np.zeros(field_shape, np.uint8)
    nucleus_ids = np.zeros(field_shape, np.uint16)
    planes = _planes(cells, field_shape)
    maps = np.zeros((len(planes), *field_shape), np.uint16)
    plane_of = {index: p for p, members in enumerate(planes) for index in members}
    mapping: dict[int, int] = {}
    for index, cell in enumerate(cells):
        box = _box(cell.origin, cell.cytoplasm.shape)
        maps[plane_of[index]][box][cell.cytoplasm] = index + 1
        semantic[box][cell.cytoplasm] = 1
        mapping[index + 1] = index + 1 if cell.nucleus is not None else 0
    for number, item in enumerate((*cells, *free), start=1):
        nucleus_ids[_box(item.origin, item.nucleus.shape)][item.nucleus] = number
    semantic[nucleus_ids > 0] = 2
    return semantic, nucleus_ids, maps, mapping


def make_pap_smear(
    n_fields: int = 4,
    field_shape: tuple[int, int] = (512, 512),
    seed: int = 0,
    n_annotated: int = 1,
) -> PapSample:
    """Make synthetic Papanicolaou-stained cervical smear fields with instance ground truth.

    Parameters
    ----------
    n_fields:
        Number of fields (microscope images) in the stack.
    field_shape:
        ``(H, W)`` of a field in pixels of 0.5 um; the number of cells grows with the area.
    seed:
        Seed of the random generator; each seed gives different fields.
    n_annotated:
        Number of fields (the first ones) copied into ``labels_sparse``.

    Returns
    -------
    PapSample
        Images, semantic and instance labels, annotated fields, class names and pixel size.

    Raises
    ------
    ValueError
        If there are no fields, a field is smaller than 64 pixels, or ``n_annotated`` is not
        between 0 and ``n_fields``.
    """
    field_shape = tuple(int(n) for n in field_shape)  # type: ignore[assignment]
    if n_fields < 1:
        raise ValueError(f"n_fields must be at least 1, got {n_fields}")
    if len(field_shape) != 2 or min(field_shape) < MIN_FIELD:
        raise ValueError(f"field_shape must be (H, W) of at least {MIN_FIELD}, got {field_shape}")
    if not 0 <= n_annotated <= n_fields:
        raise ValueError(
            f"n_annotated must be between 0 and n_fields={n_fields}, got {n_annotated}"
        )
    rng = np.random.default_rng(seed)
    images, semantics, nuclei, plane_maps, mappings = [], [], [], [], []
    for _ in range(n_fields):
        image, cells, free = _render_field(rng, field_shape)
        semantic, nucleus_ids, maps, mapping = _field_labels(cells, free, field_shape)
        images.append(image)
        semantics.append(semantic)
        nuclei.append(nucleus_ids)
        plane_maps.append(maps)
        mappings.append(mapping)
    n_planes = max(len(m) for m in plane_maps)
    cytoplasm_planes = np.zeros((n_planes, n_fields, *field_shape), np.uint16)
    for field, maps in enumerate(plane_maps):
        cytoplasm_planes[: len(maps), field] = maps
    semantic_full = np.stack(semantics)
    annotated = np.arange(n_annotated, dtype=np.intp)
    labels_sparse = np.zeros_like(semantic_full)
    labels_sparse[annotated] = semantic_full[annotated]
    logger.debug("made %d Pap smear fields of %s (seed %d)", n_fields, field_shape, seed)
    return PapSample(
        image=np.stack(images),
        semantic_full=semantic_full,
        labels_sparse=labels_sparse,
        annotated=annotated,
        nuclei=np.stack(nuclei),
        cytoplasm_planes=cytoplasm_planes,
        cell_to_nucleus=mappings,
        class_names=dict(PAP_CLASSES),
        scale=(PAP_PIXEL_UM, PAP_PIXEL_UM),
    )
