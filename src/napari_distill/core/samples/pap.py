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

from .pap_cells import (
    CELL_TYPES,
    CELLS_PER_MM2,
    LIGHT_GREEN,
    PAP_PIXEL_UM,
    Cell,
    cell_box,
    debris,
    field_stains,
    free_nuclei,
    make_cell,
)

logger = logging.getLogger(__name__)

PAP_CLASSES: dict[int, str] = {1: "cytoplasm", 2: "nucleus"}
MIN_FIELD = 64


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


def _place(rng, field_shape, cells_so_far, nuclei_centres, clustered) -> tuple[float, float]:
    """A cell centre: free, or (clumped smears) overlapping a cell already placed."""
    if clustered and cells_so_far:
        anchor = cells_so_far[int(rng.integers(len(cells_so_far)))]
        distance = rng.uniform(0.35, 0.9) * anchor[1]
        angle = rng.uniform(0, 2 * np.pi)
        return anchor[0][0] + distance * np.sin(angle), anchor[0][1] + distance * np.cos(angle)
    return rng.uniform(0, field_shape[0]), rng.uniform(0, field_shape[1])


def _render_field(rng, field_shape) -> tuple[np.ndarray, list[Cell], list[Cell]]:
    """One field: the RGB image, its cells (drawn order) and its free nuclei."""
    h, w = field_shape
    stains = field_stains(rng)
    textures = []
    for sigma in (5.0, 0.9, 30.0):
        noise = ndimage.gaussian_filter(rng.standard_normal(field_shape, dtype=np.float32), sigma)
        textures.append(noise / (noise.std() + 1e-6))
    area_mm2 = h * w * (PAP_PIXEL_UM / 1000) ** 2
    crowding = rng.uniform(0.7, 1.4)
    n_cells = max(2, int(rng.poisson(CELLS_PER_MM2 * area_mm2 * crowding)))
    kinds = list(CELL_TYPES)
    shares = np.array([t[-1] for t in CELL_TYPES.values()])
    cells: list[Cell] = []
    placed: list[tuple[tuple[float, float], float]] = []
    nuclei_centres: list[tuple[float, float, float]] = []
    for index in range(n_cells * 4):  # rejected placements get retried, up to a point
        if len(cells) >= n_cells:
            break
        kind = kinds[int(rng.choice(len(kinds), p=shares / shares.sum()))]
        clustered = index > 0 and rng.random() < 0.55
        centre = _place(rng, field_shape, placed, nuclei_centres, clustered)
        cell = make_cell(rng, kind, centre, field_shape, stains, textures)
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
    free = free_nuclei(rng, field_shape, stains, textures, nuclei_centres)
    density = np.zeros((h, w, 3), np.float32)
    focus = rng.uniform(0.3, 1.1)
    for item in (*cells, *free):
        blur = focus + (rng.uniform(0, 0.8) if rng.random() < 0.85 else rng.uniform(1.5, 2.8))
        box = cell_box(item.origin, item.cytoplasm.shape)
        density[box] += ndimage.gaussian_filter(item.density, (blur, blur, 0))
    density += debris(rng, field_shape, stains, focus)
    background = np.array([236, 234, 240], np.float32) * rng.uniform(0.96, 1.02, 3)
    # Slightly uneven illumination, faint pink mucus haze, camera noise.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = 1 - 0.06 * (((yy / h - 0.5) ** 2 + (xx / w - 0.5) ** 2) * 2)
    haze = (
        np.clip(textures[2], 0, None)[..., None] * 0.025 * stains["light green"] / LIGHT_GREEN.max()
    )
    light = background * vignette[..., None] * np.exp(-(density + haze))
    light += rng.normal(0, 1.8, light.shape).astype(np.float32)
    return np.clip(np.round(light), 0, 255).astype(np.uint8), cells, free


def _planes(cells: list[Cell], field_shape) -> list[list[int]]:
    """Greedy colouring of the overlap graph: cell indices per plane, no overlaps within one."""
    full = []
    for cell in cells:
        mask = np.zeros(field_shape, bool)
        box = cell_box(cell.origin, cell.cytoplasm.shape)
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


def _field_labels(cells: list[Cell], free: list[Cell], field_shape) -> tuple:
    """Semantic labels, nucleus ids, cytoplasm planes and cell -> nucleus ids of one field."""
    semantic = np.zeros(field_shape, np.uint8)
    nucleus_ids = np.zeros(field_shape, np.uint16)
    planes = _planes(cells, field_shape)
    maps = np.zeros((len(planes), *field_shape), np.uint16)
    plane_of = {index: p for p, members in enumerate(planes) for index in members}
    mapping: dict[int, int] = {}
    for index, cell in enumerate(cells):
        box = cell_box(cell.origin, cell.cytoplasm.shape)
        maps[plane_of[index]][box][cell.cytoplasm] = index + 1
        semantic[box][cell.cytoplasm] = 1
        mapping[index + 1] = index + 1 if cell.nucleus is not None else 0
    for number, item in enumerate((*cells, *free), start=1):
        nucleus_ids[cell_box(item.origin, item.nucleus.shape)][item.nucleus] = number
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
