"""Instance scores for overlapping cells: every cell compared whole, shared pixels and all.

The AJI of :mod:`.metrics` reads one label per pixel, so a pixel where two cells overlap counts
for one of them only. Here both predictions and truth are cell planes (``(N, P, H, W)``, see
:mod:`napari_distill.core.io.cells`): the overlap table between every true and every predicted
cell is summed over all pairs of planes, so each cell's full mask takes part. Nuclei, which do
not overlap, are the special case of one plane.

Scores, aggregated over all fields given (not averaged per field, so a crowded field weighs
more, as in the papers):

- ``aji``: Kumar et al.'s Aggregated Jaccard Index on the whole masks: each true cell with its
  best predicted cell by IoU, unused predicted cells added to the union.
- ``dice``: object-level Dice (Sirinukunwattana et al. 2017), the area-weighted mean of each
  true cell's Dice with its most overlapping predicted cell and each predicted cell's with its
  most overlapping true cell, averaged over both directions.
- ``f1``, ``matched``, ``missed``, ``spurious``: one-to-one matches at IoU > 0.5 (greedy by
  IoU: with overlapping cells a match at 0.5 is no longer unique), true cells without a match,
  predicted cells without a match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class _Table:
    """Areas of true and predicted cells and the intersection of every overlapping pair."""

    true_area: np.ndarray  # (G,)
    pred_area: np.ndarray  # (S,)
    pair_true: np.ndarray  # (M,) index into true_area
    pair_pred: np.ndarray  # (M,)
    pair_inter: np.ndarray  # (M,)

    def iou(self) -> np.ndarray:
        union = self.true_area[self.pair_true] + self.pred_area[self.pair_pred] - self.pair_inter
        return self.pair_inter / np.maximum(union, 1)


def _as_fields(planes: np.ndarray, name: str) -> np.ndarray:
    planes = np.asarray(planes)
    if planes.ndim == 3:
        planes = planes[None]
    if planes.ndim != 4:
        raise ValueError(f"{name}: cell planes are (P, H, W) or (N, P, H, W), got {planes.shape}")
    return planes


def _compact(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per plane, pixel -> index of its cell in this field (-1 background); and cell areas."""
    ids, inverse = np.unique(field, return_inverse=True)
    inverse = inverse.reshape(field.shape).astype(np.int64)
    offset = 1 if ids.size and ids[0] == 0 else 0
    index = inverse - offset  # background -> -1
    area = np.bincount(index[index >= 0], minlength=ids.size - offset).astype(np.float64)
    return index, area


def _field_table(pred: np.ndarray, truth: np.ndarray) -> _Table:
    """The overlap table of one field's planes ``(P, H, W)`` (any number of planes each)."""
    t_index, t_area = _compact(truth)
    p_index, p_area = _compact(pred)
    n_pred = max(p_area.size, 1)
    keys: list[np.ndarray] = []
    for t_plane in t_index:
        t_in = t_plane >= 0
        if not t_in.any():
            continue
        for p_plane in p_index:
            both = t_in & (p_plane >= 0)
            if both.any():
                keys.append(t_plane[both] * n_pred + p_plane[both])
    if keys:
        pair_keys, inter = np.unique(np.concatenate(keys), return_counts=True)
    else:
        pair_keys, inter = np.zeros(0, np.int64), np.zeros(0, np.int64)
    return _Table(t_area, p_area, pair_keys // n_pred, pair_keys % n_pred, inter.astype(float))


def _best(first: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Index of the pair with the highest ``score`` for every distinct value of ``first``."""
    order = np.lexsort((-score, first))
    keep = np.ones(order.size, bool)
    keep[1:] = first[order][1:] != first[order][:-1]
    return order[keep]


def _matches(table: _Table, iou: np.ndarray, threshold: float = 0.5) -> int:
    """One-to-one matches at IoU > ``threshold``, taken by decreasing IoU. Greedy on purpose:
    with overlapping truth one predicted cell can pass 0.5 with two true cells."""
    candidates = np.flatnonzero(iou > threshold)
    used_true: set[int] = set()
    used_pred: set[int] = set()
    for m in candidates[np.argsort(-iou[candidates], kind="stable")]:
        t, p = int(table.pair_true[m]), int(table.pair_pred[m])
        if t not in used_true and p not in used_pred:
            used_true.add(t)
            used_pred.add(p)
    return len(used_true)


@dataclass(frozen=True)
class CellScores:
    """Overlap-aware instance scores (see the module's docstring); NaN where undefined."""

    aji: float
    dice: float
    f1: float
    matched: int
    missed: int
    spurious: int
    n_true: int
    n_pred: int

    def as_dict(self) -> dict[str, float | int]:
        """Plain values, for JSON and reports."""
        return asdict(self)


def _scores(tables: list[_Table]) -> CellScores:
    inter_sum = union_sum = 0.0
    true_terms: list[float] = []
    pred_terms: list[float] = []
    true_weight = pred_weight = 0.0
    matched = n_true = n_pred = 0
    for t in tables:
        n_true += t.true_area.size
        n_pred += t.pred_area.size
        true_weight += float(t.true_area.sum())
        pred_weight += float(t.pred_area.sum())
        union_sum += float(t.true_area.sum())
        used = np.zeros(t.pred_area.size, bool)
        if t.pair_inter.size:
            iou = t.iou()
            best = _best(t.pair_true, iou)
            inter_sum += float(t.pair_inter[best].sum())
            union_sum += float((t.pred_area[t.pair_pred[best]] - t.pair_inter[best]).sum())
            used[t.pair_pred[best]] = True
            dice = 2 * t.pair_inter / (t.true_area[t.pair_true] + t.pred_area[t.pair_pred])
            for first, area in ((t.pair_true, t.true_area), (t.pair_pred, t.pred_area)):
                pick = _best(first, t.pair_inter)
                terms = true_terms if first is t.pair_true else pred_terms
                terms.append(float((area[first[pick]] * dice[pick]).sum()))
            matched += _matches(t, iou)
        union_sum += float(t.pred_area[~used].sum())
    aji = inter_sum / union_sum if union_sum > 0 else float("nan")
    if true_weight > 0 and pred_weight > 0:
        dice_obj = 0.5 * (sum(true_terms) / true_weight + sum(pred_terms) / pred_weight)
    else:
        dice_obj = float("nan") if true_weight == pred_weight == 0 else 0.0
    denom = n_true + n_pred
    return CellScores(
        aji=aji,
        dice=dice_obj,
        f1=2 * matched / denom if denom else float("nan"),
        matched=matched,
        missed=n_true - matched,
        spurious=n_pred - matched,
        n_true=n_true,
        n_pred=n_pred,
    )


def score_cells(
    pred_planes: np.ndarray, true_planes: np.ndarray, fields: Sequence[int] | None = None
) -> CellScores:
    """Overlap-aware AJI, object Dice, F1 at IoU 0.5 and cell counts of cell planes.

    Parameters
    ----------
    pred_planes, true_planes:
        ``(N, P, H, W)`` (or one field's ``(P, H, W)``); the numbers of planes may differ.
    fields:
        Score only these fields (e.g. the unannotated ones); default all.
    """
    pred = _as_fields(pred_planes, "prediction")
    truth = _as_fields(true_planes, "truth")
    if pred.shape[0] != truth.shape[0] or pred.shape[2:] != truth.shape[2:]:
        raise ValueError(
            f"prediction {pred.shape} and truth {truth.shape} differ in fields or field size"
        )
    chosen = range(pred.shape[0]) if fields is None else [int(f) for f in fields]
    return _scores([_field_table(pred[f], truth[f]) for f in chosen])


def score_nuclei(
    pred: np.ndarray, truth: np.ndarray, fields: Sequence[int] | None = None
) -> CellScores:
    """The same scores for non-overlapping instances ``(N, H, W)`` or ``(H, W)`` (nuclei)."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ")
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    return score_cells(pred[:, None], truth[:, None], fields)
