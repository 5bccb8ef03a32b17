"""Segmentation metrics: Dice and IoU per class, their means, AJI, F1 at an IoU, Spearman.

Semantic metrics are read from one confusion matrix counted with ``np.bincount`` (a single
pass over the voxels, slice by slice so that memory-mapped stacks stay on disk). Every
function that takes whole stacks has a ``slices`` argument: only those slices are compared,
which is how a score is restricted to annotated (or held-out) slices.

Conventions for empty classes: a class absent from both prediction and truth has no score
(NaN) and is left out of the means; a mean with nothing to average is NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats


def _select(array: np.ndarray, slices: Sequence[int] | None) -> np.ndarray:
    if slices is None:
        return array
    if array.ndim < 3:
        raise ValueError(
            f"'slices' selects slices of a stack (N, H, W), got an array of shape {array.shape}"
        )
    return array[np.asarray(slices, dtype=np.int64)]


def _check_shapes(pred: np.ndarray, truth: np.ndarray) -> None:
    if pred.shape != truth.shape:
        raise ValueError(
            f"prediction of shape {pred.shape} and truth of shape {truth.shape} differ"
        )


def _present_ids(pred: np.ndarray, truth: np.ndarray) -> tuple[int, ...]:
    found: set[int] = {0}
    for array in (pred, truth):
        chunks = array if array.ndim >= 3 else [array]
        for chunk in chunks:
            found.update(int(v) for v in np.unique(chunk))
    return tuple(sorted(found))


def _scored_ids(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int] | None,
    slices: Sequence[int] | None,
) -> tuple[int, ...]:
    if class_ids is not None:
        return tuple(int(c) for c in class_ids)
    return _present_ids(_select(pred, slices), _select(truth, slices))


def confusion_matrix(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int],
    slices: Sequence[int] | None = None,
) -> np.ndarray:
    """Counts ``cm[t, p]`` of voxels with true class ``class_ids[t]`` predicted ``class_ids[p]``.

    Label values not in ``class_ids`` are counted in one extra last row/column ("other"), so
    that they still count as errors of the listed classes.

    Returns
    -------
    np.ndarray
        ``(K + 1, K + 1)`` int64 counts, ``K = len(class_ids)``.
    """
    _check_shapes(pred, truth)
    pred, truth = _select(pred, slices), _select(truth, slices)
    ids = np.asarray(list(class_ids), dtype=np.int64)
    if ids.size == 0 or np.any(ids < 0):
        raise ValueError(f"class_ids must be non-negative and not empty, got {list(class_ids)}")
    k = ids.size
    bins = (k + 1) * (k + 1)
    counts = np.zeros(bins, dtype=np.int64)
    # One slice at a time: bounded temporaries for large or memory-mapped stacks.
    for p_chunk, t_chunk in zip(*_chunks(pred, truth), strict=True):
        p_idx = _to_indices(np.asarray(p_chunk), ids)
        t_idx = _to_indices(np.asarray(t_chunk), ids)
        counts += np.bincount((t_idx * (k + 1) + p_idx).ravel(), minlength=bins)
    return counts.reshape(k + 1, k + 1)


def _chunks(pred: np.ndarray, truth: np.ndarray) -> tuple[Any, Any]:
    if pred.ndim >= 3:
        return pred, truth
    return [pred], [truth]


def _to_indices(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Label values -> index in ``ids``; values not in ``ids`` -> ``len(ids)``."""
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must hold integers, got dtype {labels.dtype}")
    labels = labels.astype(np.int64, copy=False)
    top = max(int(ids.max()), int(labels.max(initial=0))) + 1
    lut = np.full(top, ids.size, dtype=np.int64)
    lut[ids] = np.arange(ids.size)
    return lut[np.clip(labels, 0, None)]


def _per_class(cm: np.ndarray, class_ids: Sequence[int], kind: str) -> dict[int, float]:
    tp = np.diag(cm)[:-1].astype(np.float64)
    fp = cm.sum(axis=0)[:-1] - tp
    fn = cm.sum(axis=1)[:-1] - tp
    denom = 2 * tp + fp + fn if kind == "dice" else tp + fp + fn
    numer = 2 * tp if kind == "dice" else tp
    with np.errstate(invalid="ignore", divide="ignore"):
        scores = np.where(denom > 0, numer / np.maximum(denom, 1), np.nan)
    return {int(c): float(s) for c, s in zip(class_ids, scores, strict=True)}


def dice_per_class(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int],
    slices: Sequence[int] | None = None,
) -> dict[int, float]:
    """Dice ``2|P∩T| / (|P| + |T|)`` per class id; NaN where the class is absent in both."""
    return _per_class(confusion_matrix(pred, truth, class_ids, slices), class_ids, "dice")


def iou_per_class(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int],
    slices: Sequence[int] | None = None,
) -> dict[int, float]:
    """IoU ``|P∩T| / |P∪T|`` per class id; NaN where the class is absent in both."""
    return _per_class(confusion_matrix(pred, truth, class_ids, slices), class_ids, "iou")


def _mean(per_class: dict[int, float], ignore_background: bool) -> float:
    values = [v for c, v in per_class.items() if not (ignore_background and c == 0)]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def mean_iou(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int] | None = None,
    ignore_background: bool = True,
    slices: Sequence[int] | None = None,
) -> float:
    """Mean IoU over the classes present in the truth or the prediction.

    Parameters
    ----------
    class_ids:
        Classes to score; ``None`` takes every value found in either array.
    ignore_background:
        Leave class id 0 out of the mean (it dominates CT stacks and says little).

    Returns
    -------
    float
        The mean over classes present in ``truth`` or ``pred`` (a class absent from both has no
        score); NaN when no scored class is present at all.
    """
    ids = (
        _present_ids(_select(pred, slices), _select(truth, slices))
        if class_ids is None
        else class_ids
    )
    return _mean(iou_per_class(pred, truth, ids, slices), ignore_background)


def mean_dice(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int] | None = None,
    ignore_background: bool = True,
    slices: Sequence[int] | None = None,
) -> float:
    """Mean Dice over the classes present in the truth or the prediction (see :func:`mean_iou`)."""
    ids = (
        _present_ids(_select(pred, slices), _select(truth, slices))
        if class_ids is None
        else class_ids
    )
    return _mean(dice_per_class(pred, truth, ids, slices), ignore_background)


def evaluate_semantic(
    pred: np.ndarray,
    truth: np.ndarray,
    class_ids: Sequence[int] | None = None,
    slices: Sequence[int] | None = None,
    ignore_background: bool = True,
) -> dict[str, Any]:
    """Every semantic score from one confusion matrix.

    Returns
    -------
    dict
        ``{"dice": {class_id: float}, "iou": {class_id: float}, "mean_dice": float,
        "mean_iou": float, "class_ids": tuple}``; means as in :func:`mean_iou`.
    """
    ids = _scored_ids(pred, truth, class_ids, slices)
    cm = confusion_matrix(pred, truth, ids, slices)
    dice = _per_class(cm, ids, "dice")
    iou = _per_class(cm, ids, "iou")
    return {
        "dice": dice,
        "iou": iou,
        "mean_dice": _mean(dice, ignore_background),
        "mean_iou": _mean(iou, ignore_background),
        "class_ids": ids,
    }


# --------------------------------------------------------------------------------- instances


@dataclass(frozen=True)
class _Overlaps:
    """Sparse overlap table between true and predicted instances."""

    true_ids: np.ndarray  # (G,) instance ids of the truth (0 excluded)
    pred_ids: np.ndarray  # (P,)
    true_area: np.ndarray  # (G,)
    pred_area: np.ndarray  # (P,)
    pair_true: np.ndarray  # (M,) index into true_ids of each overlapping pair
    pair_pred: np.ndarray  # (M,) index into pred_ids
    pair_inter: np.ndarray  # (M,) intersection area

    def pair_iou(self) -> np.ndarray:
        union = self.true_area[self.pair_true] + self.pred_area[self.pair_pred] - self.pair_inter
        return self.pair_inter / np.maximum(union, 1)


def _overlaps(pred: np.ndarray, truth: np.ndarray) -> _Overlaps:
    _check_shapes(pred, truth)
    pred = np.asarray(pred).ravel()
    truth = np.asarray(truth).ravel()
    true_ids, t_inv = np.unique(truth, return_inverse=True)
    pred_ids, p_inv = np.unique(pred, return_inverse=True)
    # Index 0 of each table is background when present; shift so that background is -1.
    t_bg = true_ids.size > 0 and true_ids[0] == 0
    p_bg = pred_ids.size > 0 and pred_ids[0] == 0
    t_idx = t_inv.astype(np.int64) - int(t_bg)
    p_idx = p_inv.astype(np.int64) - int(p_bg)
    true_ids, pred_ids = true_ids[int(t_bg) :], pred_ids[int(p_bg) :]
    true_area = np.bincount(t_idx[t_idx >= 0], minlength=true_ids.size).astype(np.float64)
    pred_area = np.bincount(p_idx[p_idx >= 0], minlength=pred_ids.size).astype(np.float64)
    both = (t_idx >= 0) & (p_idx >= 0)
    keys = t_idx[both] * max(pred_ids.size, 1) + p_idx[both]
    pair_keys, pair_inter = np.unique(keys, return_counts=True)
    return _Overlaps(
        true_ids=true_ids,
        pred_ids=pred_ids,
        true_area=true_area,
        pred_area=pred_area,
        pair_true=pair_keys // max(pred_ids.size, 1),
        pair_pred=pair_keys % max(pred_ids.size, 1),
        pair_inter=pair_inter.astype(np.float64),
    )


def aji(
    pred_instances: np.ndarray,
    true_instances: np.ndarray,
    slices: Sequence[int] | None = None,
) -> float:
    """Aggregated Jaccard Index (Kumar et al. 2017, IEEE TMI 36(7)).

    For every true object ``G_i`` the predicted object ``S_j`` of largest IoU with it is taken;
    ``|G_i ∩ S_j|`` is added to the intersection and ``|G_i ∪ S_j|`` to the union (only
    ``|G_i|`` when nothing overlaps). Predicted objects never taken add their area to the
    union. 0 is background in both arrays; ids need not be consecutive.

    Returns
    -------
    float
        ``sum |G ∩ S| / sum |G ∪ S|`` in [0, 1]; NaN when both arrays are empty.
    """
    table = _overlaps(_select(pred_instances, slices), _select(true_instances, slices))
    intersection = 0.0
    union = float(table.true_area.sum())  # each G_i counted once; matched S_j add S_j \ G_i
    used = np.zeros(table.pred_ids.size, dtype=bool)
    if table.pair_inter.size:
        iou = table.pair_iou()
        # Best pair per true object: sort by (true index, -IoU) and keep the first of each run.
        order = np.lexsort((-iou, table.pair_true))
        first = np.ones(order.size, dtype=bool)
        first[1:] = table.pair_true[order][1:] != table.pair_true[order][:-1]
        best = order[first]
        inter = table.pair_inter[best]
        intersection = float(inter.sum())
        union += float((table.pred_area[table.pair_pred[best]] - inter).sum())
        used[table.pair_pred[best]] = True
    union += float(table.pred_area[~used].sum())
    return intersection / union if union > 0 else float("nan")


@dataclass(frozen=True)
class InstanceMatch:
    """One-to-one matching of predicted to true instances at an IoU threshold."""

    true_positives: int
    false_positives: int
    false_negatives: int
    threshold: float

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else float("nan")

    @property
    def recall(self) -> float:
        actual = self.true_positives + self.false_negatives
        return self.true_positives / actual if actual else float("nan")

    @property
    def f1(self) -> float:
        denom = 2 * self.true_positives + self.false_positives + self.false_negatives
        return 2 * self.true_positives / denom if denom else float("nan")


def match_instances(
    pred: np.ndarray,
    true: np.ndarray,
    threshold: float = 0.5,
    slices: Sequence[int] | None = None,
) -> InstanceMatch:
    """Count matches: a pair matches when its IoU exceeds ``threshold``.

    For ``threshold >= 0.5`` such a match is unique on both sides (two objects cannot both
    overlap a third by more than half of their union). Below 0.5 the pairs are taken greedily
    by decreasing IoU so that matching stays one-to-one.
    """
    table = _overlaps(_select(pred, slices), _select(true, slices))
    iou = table.pair_iou() if table.pair_inter.size else np.zeros(0)
    candidates = np.flatnonzero(iou > threshold)
    matched_true: set[int] = set()
    matched_pred: set[int] = set()
    for m in candidates[np.argsort(-iou[candidates], kind="stable")]:
        t, p = int(table.pair_true[m]), int(table.pair_pred[m])
        if t not in matched_true and p not in matched_pred:
            matched_true.add(t)
            matched_pred.add(p)
    tp = len(matched_true)
    return InstanceMatch(
        true_positives=tp,
        false_positives=int(table.pred_ids.size) - tp,
        false_negatives=int(table.true_ids.size) - tp,
        threshold=threshold,
    )


def f1_at_iou(
    pred: np.ndarray,
    true: np.ndarray,
    threshold: float = 0.5,
    slices: Sequence[int] | None = None,
) -> float:
    """Instance F1 ``2 TP / (2 TP + FP + FN)`` with matches at IoU > ``threshold``.

    NaN when there are no objects in either array.
    """
    return match_instances(pred, true, threshold, slices).f1


def spearman(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Spearman rank correlation of two score lists; NaN when undefined (n < 2 or constant)."""
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"spearman needs two lists of equal length, got {x.size} and {y.size}")
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)
