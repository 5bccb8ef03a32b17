"""What the cell model learns from: painted fields, each cell paired with its nucleus, and the
batches drawn from them.

Pairing is needed because a user paints cells and nuclei as two layers with unrelated ids. A
nucleus belongs to the cell that holds most of it; where overlapping cells both hold it, to
the cell whose centre is nearest (one-to-one, by an assignment over the whole field). Painted
nuclei without a cell (free nuclei) are kept as examples whose cell is empty, so the cell net
learns to answer "no cell" for them; painted cells without a nucleus cannot be reached by a
nucleus-guided model and are counted, not used.

The geometry (window around a nucleus, smallest nucleus and cell kept) is measured here from
the painted cells, so nothing about the sample's sizes is built in.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from skimage.segmentation import find_boundaries

from ..inference.cells import nucleus_centres
from ..io.cells import unpack_planes
from ..models.cells import CellModelConfig, cell_window, crop_windows


def pair_cells_with_nuclei(planes: np.ndarray, nuclei: np.ndarray) -> dict[int, int]:
    """``{nucleus id: cell id or 0}`` for one field's planes ``(P, H, W)`` and nuclei ``(H, W)``."""
    cells = unpack_planes(planes)
    nucleus_ids = [int(i) for i in np.unique(nuclei) if i > 0]
    pairing = dict.fromkeys(nucleus_ids, 0)
    if not cells or not nucleus_ids:
        return pairing
    cell_ids = list(cells)
    score = np.full((len(nucleus_ids), len(cell_ids)), -1.0)
    for j, cell_id in enumerate(cell_ids):
        mask = cells[cell_id]
        cy, cx = np.argwhere(mask).mean(axis=0)
        radius = np.sqrt(mask.sum() / np.pi)
        inside = np.bincount(nuclei[mask].ravel(), minlength=int(nuclei.max()) + 1)
        for i, nucleus_id in enumerate(nucleus_ids):
            if inside[nucleus_id] == 0:
                continue
            own = nuclei == nucleus_id
            share = inside[nucleus_id] / own.sum()
            if share < 0.5:
                continue
            ny, nx = np.argwhere(own).mean(axis=0)
            score[i, j] = share - 0.5 * min(np.hypot(ny - cy, nx - cx) / radius, 1.0)
    rows, cols = linear_sum_assignment(-score)
    for i, j in zip(rows, cols, strict=True):
        if score[i, j] > -1.0:
            pairing[nucleus_ids[i]] = cell_ids[j]
    return pairing


@dataclass
class CellField:
    """One annotated field ready for training."""

    image: torch.Tensor  # (C, H, W) normalised
    nucleus_target: torch.Tensor  # (H, W) int64: 0 background, 1 inside, 2 rim
    nuclei: torch.Tensor  # (H, W) int64 instances
    cells: dict[int, np.ndarray]  # cell id -> whole mask
    pairing: dict[int, int]  # nucleus id -> cell id (0: free nucleus)
    ids: np.ndarray  # nucleus ids
    centres: np.ndarray  # (M, 2)


@dataclass
class CellData:
    """The annotated fields, and how many painted cells could not be used."""

    fields: list[CellField]
    cells_without_nucleus: int
    n_cells: int
    n_nuclei: int


def nucleus_target(nuclei: np.ndarray) -> np.ndarray:
    """Three classes from nucleus instances: the rim (inner boundary) apart from the inside, so
    the net learns where touching nuclei part."""
    target = (nuclei > 0).astype(np.int64)
    target[find_boundaries(nuclei, mode="inner") & (nuclei > 0)] = 2
    return target


def prepare_cell_data(
    fields: np.ndarray, planes: np.ndarray, nuclei: np.ndarray, annotated: list[int]
) -> CellData:
    """Pair and package the annotated fields (``fields``: normalised ``(N, C, H, W)``)."""
    prepared, orphans, n_cells, n_nuclei = [], 0, 0, 0
    for index in annotated:
        pairing = pair_cells_with_nuclei(planes[index], nuclei[index])
        cells = unpack_planes(planes[index])
        orphans += len(set(cells) - set(pairing.values()))
        n_cells += len(cells)
        n_nuclei += len(pairing)
        ids, centres = nucleus_centres(nuclei[index].astype(np.int64))
        prepared.append(
            CellField(
                image=torch.from_numpy(fields[index]),
                nucleus_target=torch.from_numpy(nucleus_target(nuclei[index])),
                nuclei=torch.from_numpy(nuclei[index].astype(np.int64)),
                cells=cells,
                pairing=pairing,
                ids=ids,
                centres=centres,
            )
        )
    return CellData(prepared, orphans, n_cells, n_nuclei)


def measure_geometry(data: CellData, config: CellModelConfig) -> CellModelConfig:
    """``config`` with the window and smallest sizes measured from the painted cells."""
    masks, centres, cell_areas, nucleus_areas = [], [], [], []
    for field in data.fields:
        nuclei = field.nuclei.numpy()
        for nucleus_id, centre in zip(field.ids, field.centres, strict=True):
            nucleus_areas.append(int((nuclei == nucleus_id).sum()))
            cell_id = field.pairing.get(int(nucleus_id), 0)
            if cell_id:
                masks.append(field.cells[cell_id])
                centres.append(tuple(centre))
                cell_areas.append(int(field.cells[cell_id].sum()))
    if not masks:
        raise ValueError("no painted cell has a painted nucleus: paint both on some fields")
    window = cell_window(masks, centres, config.depth)
    return dataclasses.replace(
        config,
        window=window,
        min_nucleus_area=max(4, int(0.25 * np.percentile(nucleus_areas, 5))),
        min_cell_area=max(16, int(0.25 * np.percentile(cell_areas, 5))),
    )


def jitter_intensity(x: torch.Tensor, rng: np.random.Generator, amount: float) -> torch.Tensor:
    """Per-sample, per-channel gain and offset (``(B, C, ...)``): a grey-level jitter for grey
    fields, a colour jitter for RGB ones, with no stain colours assumed."""
    b, c = x.shape[:2]
    gain = torch.from_numpy(rng.uniform(1 - amount, 1 + amount, (b, c, 1, 1)).astype(np.float32))
    bias = torch.from_numpy(rng.uniform(-amount, amount, (b, c, 1, 1)).astype(np.float32) / 2)
    return x * gain.to(x.device) + bias.to(x.device)


def _flip_rotate(tensors: list[torch.Tensor], rng: np.random.Generator) -> list[torch.Tensor]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for t in tensors:
        t = torch.rot90(t, k, dims=(-2, -1))
        out.append(torch.flip(t, dims=(-1,)) if flip else t)
    return out


def nucleus_patches(
    images: list[torch.Tensor],
    rng: np.random.Generator,
    size: int,
    count: int,
    targets: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``count`` random square patches (flipped / rotated) of the fields, with their targets."""
    xs, ys = [], []
    for _ in range(count):
        index = int(rng.integers(len(images)))
        image = images[index]
        h, w = image.shape[-2:]
        s = min(size, h, w)
        top, left = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        parts = [image[:, top : top + s, left : left + s]]
        if targets is not None:
            parts.append(targets[index][top : top + s, left : left + s])
        parts = _flip_rotate(parts, rng)
        xs.append(parts[0])
        if targets is not None:
            ys.append(parts[1])
    return torch.stack(xs), (torch.stack(ys) if targets is not None else None)


def cell_crops(
    data: CellData, rng: np.random.Generator, config: CellModelConfig, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` windows around random painted nuclei (centre moved by a few pixels), their
    whole-cell targets resampled like the input (empty for a free nucleus)."""
    xs, ys = [], []
    usable = [f for f in data.fields if f.ids.size]
    for _ in range(count):
        field = usable[int(rng.integers(len(usable)))]
        k = int(rng.integers(field.ids.size))
        nucleus_id = int(field.ids[k])
        shift = rng.integers(-2, 3, 2)
        h, w = field.nuclei.shape
        centre = np.clip(field.centres[k] + shift, 0, [h - 1, w - 1])[None]
        x = crop_windows(
            field.image, field.nuclei, centre, np.array([nucleus_id]), config.window,
            config.crop_size,
        )  # fmt: skip
        cell_id = field.pairing.get(nucleus_id, 0)
        mask = field.cells[cell_id] if cell_id else np.zeros((h, w), bool)
        target = _crop_mask(mask, centre[0], config.window, config.crop_size)
        x, target = _flip_rotate([x[0], target], rng)
        xs.append(x)
        ys.append(target)
    return torch.stack(xs), torch.stack(ys)


def _crop_mask(mask: np.ndarray, centre: np.ndarray, window: int, crop_size: int) -> torch.Tensor:
    half = window // 2
    padded = np.pad(mask, half)
    row, col = int(centre[0]), int(centre[1])
    box = torch.from_numpy(padded[row : row + window, col : col + window].astype(np.float32))
    if window != crop_size:
        box = F.interpolate(box[None, None], size=(crop_size, crop_size), mode="area")[0, 0]
    return (box > 0.5).long()
