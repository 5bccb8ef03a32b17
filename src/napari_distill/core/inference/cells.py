"""Cells and nuclei of Pap smear fields from a :class:`~napari_distill.core.models.cells.CellModel`.

Per field: the nucleus net's three classes; nucleus instances by a seeded watershed (seeds:
connected regions where "inside" wins; flooded over the nucleus-or-rim mask, so touching nuclei
split along the rim the net learnt); then one window per nucleus through the cell net, batched,
each window's cell mask pasted back whole. Cells get their nucleus's id and are packed into
planes, so overlapping cytoplasm stays overlapping. A generator, like the rest of the core's
prediction: it yields a :class:`CellPredictProgress` per field and returns the arrays.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import watershed

from ..io.cells import pack_planes, stack_planes
from ..models.cells import CellModel, crop_windows, pad_for
from ..preprocess import as_stack


@dataclass(frozen=True)
class CellPredictProgress:
    """Fields done out of the total, and the cells found in the last one."""

    done: int
    total: int
    cells: int


def normalise_field(field: np.ndarray) -> np.ndarray:
    """``(H, W, C)`` -> ``(C, H, W)`` float32, each channel's 1st-99th percentile to [0, 1].

    Per field and per channel, from the field's own pixels: no stain colours or grey levels
    are assumed, so grey and RGB fields, and slides stained more or less, go the same way.
    """
    data = np.asarray(field, np.float32)
    low = np.percentile(data, 1, axis=(0, 1))
    high = np.percentile(data, 99, axis=(0, 1))
    scaled = (data - low) / np.maximum(high - low, 1e-6)
    return np.ascontiguousarray(np.moveaxis(scaled, -1, 0))


def fields_as_input(
    image: np.ndarray, rgb: bool | None = None, channels: int | None = None
) -> np.ndarray:
    """``(N, H, W)`` grey or ``(N, H, W, 3)`` RGB fields (or one field) -> ``(N, C, H, W)``.

    ``channels``: what a trained model takes; RGB fields are averaged to grey for a grey model
    and grey fields repeated for an RGB one, so either model reads either kind of field.
    """
    stack = as_stack(np.asarray(image), rgb).astype(np.float32, copy=False)
    if channels is not None and stack.shape[-1] != channels:
        if channels == 1:
            stack = stack.mean(-1, keepdims=True)
        elif stack.shape[-1] == 1:
            stack = np.repeat(stack, channels, axis=-1)
        else:
            raise ValueError(
                f"the model takes {channels} channels, the fields have {stack.shape[-1]}"
            )
    return np.stack([normalise_field(f) for f in stack])


def nucleus_logits(model: CellModel, field: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The nucleus net on a whole ``(C, H, W)`` field (padded to its levels, cropped back)."""
    depth = model.config.depth
    h, w = field.shape[-2:]
    padded = F.pad(field[None], (0, pad_for(w, depth), 0, pad_for(h, depth)), mode="replicate")
    logits, features = model.nuclei(padded)
    return logits[0, :, :h, :w], features


def nuclei_from_probabilities(probabilities: np.ndarray, min_area: int) -> np.ndarray:
    """Nucleus instances ``(H, W)`` int32 from ``(3, H, W)`` probabilities (bg, inside, rim)."""
    inside = probabilities[1]
    mask = (probabilities[1] + probabilities[2]) > 0.5
    seeds, _ = ndimage.label((inside > probabilities[2]) & (inside > probabilities[0]) & mask)
    labels = watershed(-inside, seeds, mask=mask)
    if labels.max() == 0:
        return labels.astype(np.int32)
    areas = np.bincount(labels.ravel())
    small = areas < min_area
    small[0] = False
    labels[small[labels]] = 0
    ids = np.unique(labels)
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids[ids > 0]] = np.arange(1, np.count_nonzero(ids) + 1)
    return lut[labels]


def nucleus_centres(nuclei: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids and integer centres ``(M, 2)`` of the nuclei: the pixel of each nucleus nearest its
    centroid (a lobed nucleus's centroid may fall outside it)."""
    ids = np.unique(nuclei)
    ids = ids[ids > 0]
    if ids.size == 0:
        return ids, np.zeros((0, 2), int)
    centres = np.array(ndimage.center_of_mass(np.ones_like(nuclei), nuclei, ids)).reshape(-1, 2)
    objects = ndimage.find_objects(nuclei)
    snapped = []
    for nucleus_id, (cy, cx) in zip(ids, centres, strict=True):
        box = objects[nucleus_id - 1]
        rows, cols = np.nonzero(nuclei[box] == nucleus_id)
        k = np.argmin((rows + box[0].start - cy) ** 2 + (cols + box[1].start - cx) ** 2)
        snapped.append((rows[k] + box[0].start, cols[k] + box[1].start))
    return ids, np.asarray(snapped, int)


def cell_probabilities(
    model: CellModel, field: torch.Tensor, nuclei: np.ndarray, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Each nucleus's cell probability in its window: ids, centres, ``(M, window, window)``."""
    cfg = model.config
    ids, centres = nucleus_centres(nuclei)
    nuclei_t = torch.from_numpy(nuclei.astype(np.int64)).to(field.device)
    probs = []
    for start in range(0, len(ids), batch_size):
        crops = crop_windows(
            field,
            nuclei_t,
            centres[start : start + batch_size],
            ids[start : start + batch_size],
            cfg.window,
            cfg.crop_size,
        )
        logits, _ = model.cells(crops)
        prob = torch.softmax(logits, 1)[:, 1:2]
        if cfg.window != cfg.crop_size:
            prob = F.interpolate(prob, size=(cfg.window, cfg.window), mode="bilinear")
        probs.append(prob[:, 0].cpu())
    stacked = torch.cat(probs) if probs else torch.zeros((0, cfg.window, cfg.window))
    return ids, centres, stacked


def paste_cells(
    ids: np.ndarray,
    centres: np.ndarray,
    probabilities: torch.Tensor,
    nuclei: np.ndarray,
    min_area: int,
) -> tuple[list[np.ndarray], list[int]]:
    """Whole cell masks in the field: each window's cell (threshold 0.5), its nucleus added,
    only the pieces touching that nucleus kept; cells under ``min_area`` dropped."""
    h, w = nuclei.shape
    window = probabilities.shape[-1]
    half = window // 2
    masks, kept = [], []
    for nucleus_id, (row, col), prob in zip(ids, centres, probabilities.numpy(), strict=True):
        top, left = row - half, col - half
        r0, c0 = max(top, 0), max(left, 0)
        r1, c1 = min(top + window, h), min(left + window, w)
        local = prob[r0 - top : r1 - top, c0 - left : c1 - left] > 0.5
        own = nuclei[r0:r1, c0:c1] == nucleus_id
        local |= own
        pieces, _ = ndimage.label(local)
        touching = np.unique(pieces[own])
        local = np.isin(pieces, touching[touching > 0])
        if local.sum() < min_area:
            continue
        mask = np.zeros((h, w), bool)
        mask[r0:r1, c0:c1] = local
        masks.append(mask)
        kept.append(int(nucleus_id))
    return masks, kept


@torch.inference_mode()
def predict_field(model: CellModel, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One normalised field ``(C, H, W)`` -> cell planes ``(P, H, W)`` and nuclei ``(H, W)``."""
    model.eval()
    device = next(model.parameters()).device
    tensor = torch.from_numpy(np.ascontiguousarray(field)).to(device)
    logits, _ = nucleus_logits(model, tensor)
    probs = torch.softmax(logits, 0).cpu().numpy()
    nuclei = nuclei_from_probabilities(probs, model.config.min_nucleus_area)
    ids, centres, cell_probs = cell_probabilities(model, tensor, nuclei)
    masks, kept = paste_cells(ids, centres, cell_probs, nuclei, model.config.min_cell_area)
    planes = pack_planes(masks, kept, dtype=np.uint32, shape=nuclei.shape)
    return planes, nuclei.astype(np.uint32)


def predict_cells(
    model: CellModel, image: np.ndarray, rgb: bool | None = None
) -> Generator[CellPredictProgress, None, tuple[np.ndarray, np.ndarray]]:
    """Cell planes ``(N, P, H, W)`` and nuclei ``(N, H, W)`` of every field of ``image``.

    ``image``: ``(N, H, W)`` grey, ``(N, H, W, 3)`` RGB, or one field. Yields a record per
    field; returns the arrays (uint32, cell ids equal to their nucleus's id).
    """
    fields = fields_as_input(image, rgb, model.config.in_channels)
    planes, nuclei = [], []
    for index, field in enumerate(fields):
        field_planes, field_nuclei = predict_field(model, field)
        planes.append(field_planes)
        nuclei.append(field_nuclei)
        n_cells = int(sum(np.count_nonzero(np.unique(p)) for p in field_planes))
        yield CellPredictProgress(index + 1, len(fields), n_cells)
    return stack_planes(planes), np.stack(nuclei)
