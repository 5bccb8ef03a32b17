"""Leave-one-painted-slice-out: how well a method predicts a painted slice from the others.

No ground truth is needed: the painted slices are the truth. Each painted slice in turn is
erased, a *predictor* fills it from the remaining painted slices, and its painted labels score
the result. The predictor is any callable, so this module knows nothing of how slices are
predicted (evaluation sits below inference and training in the core's layers): label
propagation passes one (:func:`napari_distill.core.inference.propagation_leave_one_out`), a
teacher trained without the held-out slice can pass another.

The estimate is pessimistic for methods that work across slices: a held-out slice lies twice
as far from its nearest painted neighbours as the unpainted slices between two painted ones,
and an outermost painted slice is predicted from one side only.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..preprocess import annotated_slices, class_ids_from_labels, labels_as_stack
from .metrics import evaluate_semantic

# (labels with the held-out slice erased, held-out slice index) -> its (H, W) labels, either
# directly or as the return value of a generator of progress records.
HeldOutPredictor = Callable[[np.ndarray, int], np.ndarray | Generator[Any, None, np.ndarray]]


@dataclass(frozen=True)
class LeaveOneOutProgress:
    """``done`` of ``total`` held-out slices scored; ``slice_index`` is the one held out now.

    ``detail`` is the predictor's own progress record when it yields one (``done`` then counts
    the slices finished before it), None after a slice is scored.
    """

    done: int
    total: int
    slice_index: int
    detail: Any = None


@dataclass(frozen=True)
class LeaveOneOutScore:
    """The result of :func:`leave_one_out`.

    Attributes
    ----------
    slices:
        The painted slices held out and scored, ascending.
    per_slice:
        Mean IoU of each held-out slice over the classes scored (background left out; a class
        absent from both the slice's paint and its prediction has no score).
    mean_iou:
        Mean IoU of all held-out slices together (one confusion matrix, as the benchmarks score
        unpainted slices); NaN when no slice could be held out.
    iou:
        IoU per class id over all held-out slices together.
    class_ids:
        The classes scored: every class painted on any slice, background first.
    """

    slices: tuple[int, ...]
    per_slice: dict[int, float]
    mean_iou: float
    iou: dict[int, float]
    class_ids: tuple[int, ...]

    @property
    def mean_of_slices(self) -> float:
        """The plain mean of :attr:`per_slice` (NaN when empty or all NaN)."""
        values = [v for v in self.per_slice.values() if not np.isnan(v)]
        return float(np.mean(values)) if values else float("nan")


def held_out_candidates(labels: np.ndarray) -> tuple[int, ...]:
    """Painted slices with another painted slice on at least one side: all of them when two
    or more slices are painted, none otherwise."""
    painted = annotated_slices(labels)
    return tuple(int(i) for i in painted) if painted.size >= 2 else ()


def leave_one_out(
    labels: np.ndarray,
    predict: HeldOutPredictor,
    *,
    slices: Sequence[int] | None = None,
) -> Generator[LeaveOneOutProgress, None, LeaveOneOutScore]:
    """Score ``predict`` on every painted slice held out from the others.

    Parameters
    ----------
    labels:
        ``(N, H, W)`` painted labels (a slice is painted when it has a non-zero label).
    predict:
        ``predict(others, held_out)`` returns the ``(H, W)`` labels of slice ``held_out``
        predicted from ``others``, the labels with that slice erased, or a generator whose
        records are passed on (as :attr:`LeaveOneOutProgress.detail`) and whose return value
        is those labels. ``others`` is valid only during the call: the erased slice is
        painted back afterwards (one copy of the labels serves every slice).
    slices:
        The painted slices to hold out; None takes :func:`held_out_candidates`.

    Yields
    ------
    LeaveOneOutProgress
        The predictor's records while it runs, and one record after each slice is scored.

    Returns
    -------
    LeaveOneOutScore
        Per slice and pooled scores.
    """
    stack = labels_as_stack(np.asarray(labels))
    chosen = held_out_candidates(stack) if slices is None else tuple(sorted(map(int, slices)))
    painted = set(annotated_slices(stack).tolist())
    unpainted = [i for i in chosen if i not in painted]
    if unpainted:
        raise ValueError(f"slices {unpainted} are not painted, so they cannot be held out")
    class_ids = class_ids_from_labels(stack)
    others = np.array(stack)  # the one copy; each held-out slice is erased, then restored
    predicted = np.zeros((len(chosen), *stack.shape[1:]), dtype=stack.dtype)
    per_slice: dict[int, float] = {}
    for done, index in enumerate(chosen):
        others[index] = 0
        try:
            result = predict(others, index)
            if inspect.isgenerator(result):
                while True:
                    try:
                        record = next(result)
                    except StopIteration as stop:
                        result = stop.value
                        break
                    yield LeaveOneOutProgress(done, len(chosen), index, record)
        finally:
            others[index] = stack[index]
        held = np.asarray(result)
        if held.shape != stack.shape[1:]:
            raise ValueError(
                f"the predictor returned labels of shape {held.shape} for slice {index}, "
                f"expected {stack.shape[1:]}"
            )
        predicted[done] = held
        per_slice[index] = evaluate_semantic(held, stack[index], class_ids)["mean_iou"]
        yield LeaveOneOutProgress(done + 1, len(chosen), index)
    if not chosen:
        return LeaveOneOutScore((), {}, float("nan"), {}, class_ids)
    pooled = evaluate_semantic(predicted, stack[list(chosen)], class_ids)
    return LeaveOneOutScore(chosen, per_slice, pooled["mean_iou"], pooled["iou"], class_ids)
