"""Teacher against label propagation on the painted slices the teacher held out, per class.

No ground truth is needed: a painted slice that a teacher's ensemble member never trained on
(:func:`~napari_distill.core.training.splits.member_splits`) is predicted by that member and,
on the same footing, by propagation from the other painted slices with the same slices erased.
Both are scored against the paint, one confusion matrix over every held-out slice, per class.

:func:`compare_held_out` turns those predictions into a frozen :class:`Comparison`: per class,
the IoU and Dice of each source, which one is used and why, as a weight ``w`` of the teacher
(``1 - w`` of the propagation). :func:`combine_probabilities` applies the weights slice by
slice: ``p_c = w_c t_c + (1 - w_c) q_c``, renormalised over the classes; painted slices keep
their paint.

The rule, per class: the source ahead by at least ``margin`` IoU is used alone; within the
margin the two are averaged (their errors differ, docs/benchmarks.md "Label propagation");
a class on no held-out slice and predicted there by neither source keeps the teacher.

Each source's mIoU (the overall estimate, which one "scored higher") is the mean over the
classes that source predicts or the paint holds on the held-out slices, so the two are
averaged over different sets. Also recorded: the classes painted there
(:attr:`Comparison.scored_class_ids`) and each held-out set's scores over its own painted
classes with the axes of the networks that predicted it (:attr:`Comparison.held_out_scores`).
The mean over the painted classes only, the same set for both, ranked the teacher against
flow propagation no better on the sample's grid (4 of 7 settings against 5 of 7), nor did
the sets predicted by a network along the painted axis (3 of 9 runs), so neither replaced it
(docs/benchmarks.md, "The rest of the grid and the leave-out rules").

Bias: a held-out slice lies twice as far from its nearest painted neighbours as an unpainted
slice between two painted ones does, and propagation loses accuracy with distance while a
teacher predicts each slice on its own: the estimate favours the teacher. Measured on the
sample in docs/benchmarks.md ("Teacher against propagation").

May import what :mod:`napari_distill.core.evaluation` may: numpy and the core's foundations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import evaluate_semantic

# IoU difference below which the two sources count as level on a class (their mean is used):
# one held-out slice of a class moves its IoU by more than this between two seeds.
DEFAULT_MARGIN = 0.02


@dataclass(frozen=True)
class HeldOut:
    """One set of painted slices held out together, and both sources' predictions of them.

    Attributes
    ----------
    slices:
        The held-out slice indices.
    truth:
        ``(n, H, W)`` their paint.
    teacher, propagation:
        ``(K, n, H, W)`` each source's probabilities, channels in the order of the comparison's
        ``class_ids``.
    axes:
        The axes the teacher's networks that predicted them slice along (0: the painted
        slices' own; a views network's 1 or 2), for the record.
    """

    slices: tuple[int, ...]
    truth: np.ndarray
    teacher: np.ndarray
    propagation: np.ndarray
    axes: tuple[int, ...] = ()


@dataclass(frozen=True)
class ClassChoice:
    """One class: both sources' held-out scores and the teacher's weight in the combination."""

    class_id: int
    name: str
    teacher_iou: float
    propagation_iou: float
    teacher_dice: float
    propagation_dice: float
    weight: float  # of the teacher; 1 - weight of the propagation
    reason: str

    @property
    def source(self) -> str:
        """``"teacher"``, ``"propagation"`` or ``"mean"``."""
        return {1.0: "teacher", 0.0: "propagation"}.get(self.weight, "mean")


@dataclass(frozen=True)
class Comparison:
    """The teacher against propagation on held-out painted slices (see the module).

    Attributes
    ----------
    fair:
        Whether any painted slice was held out from the teacher; when False only
        :attr:`note` is meaningful and the combination is the teacher alone.
    method:
        The propagation method (``"nearest"`` or ``"flow"``).
    class_ids:
        Every class, background first, in the order of the probability channels.
    classes:
        The per-class scores and choices (background included), in ``class_ids`` order.
    held_out:
        Each set of slices held out together (one per group of ensemble members).
    teacher_miou, propagation_miou:
        mIoU over the foreground classes on every held-out slice (one confusion matrix; each
        over the classes it predicts or the paint holds there).
    combined_miou:
        The combination's on the same slices: its weights were chosen there, so it flatters.
    scored_class_ids:
        The foreground classes painted on the held-out slices (for the record: a mean over
        these is the same set for both sources).
    held_out_scores:
        Per held-out set (as :attr:`held_out`): the teacher's and the propagation's mIoU over
        the classes painted on that set, and the axes of the networks that predicted it.
    note:
        Why no fair comparison is possible, or what was left out; "" otherwise.
    margin:
        The IoU difference below which the two sources were averaged.
    """

    fair: bool
    method: str
    class_ids: tuple[int, ...]
    classes: tuple[ClassChoice, ...] = ()
    held_out: tuple[tuple[int, ...], ...] = ()
    teacher_miou: float = float("nan")
    propagation_miou: float = float("nan")
    combined_miou: float = float("nan")
    note: str = ""
    margin: float = DEFAULT_MARGIN
    scored_class_ids: tuple[int, ...] = ()
    held_out_scores: tuple[dict, ...] = ()

    def weights(self) -> np.ndarray:
        """``(K,)`` float32: the teacher's weight per probability channel."""
        if not self.fair:
            return np.ones(len(self.class_ids), dtype=np.float32)
        return np.asarray([c.weight for c in self.classes], dtype=np.float32)

    @property
    def uses_propagation(self) -> bool:
        """Whether any class takes something from the propagation."""
        return bool(self.fair and (self.weights() < 1.0).any())

    def foreground(self) -> tuple[ClassChoice, ...]:
        """:attr:`classes` without the background."""
        return tuple(c for c in self.classes if c.class_id != 0)

    def summary(self) -> str:
        """One sentence: which source won and why (or why there is no comparison)."""
        if not self.fair:
            return f"No fair comparison with propagation: {self.note}"
        held = sum(len(s) for s in self.held_out)
        fg = self.foreground()
        by_source = {s: [c.name for c in fg if c.source == s] for s in ("teacher", "propagation")}
        level = [c.name for c in fg if c.source == "mean"]
        if abs(self.teacher_miou - self.propagation_miou) < self.margin:
            outcome = "the two scored level"
        elif self.teacher_miou > self.propagation_miou:
            outcome = "the teacher scored higher"
        else:
            outcome = "propagation scored higher"
        parts = [
            f"On {held} painted slice(s) the teacher never trained on, {outcome} "
            f"(mIoU teacher {self.teacher_miou:.3f}, {self.method} propagation "
            f"{self.propagation_miou:.3f})"
        ]
        for source, names in by_source.items():
            if names:
                parts.append(f"{source} used for {_names(names)}")
        if level:
            parts.append(f"their mean for {_names(level)} (within {self.margin:.2f} IoU)")
        return "; ".join(parts) + "."

    def rows(self) -> list[dict]:
        """One plain dict per foreground class (report tables, JSON, the widget)."""
        return [
            {
                "class_id": c.class_id, "name": c.name, "teacher_iou": c.teacher_iou,
                "propagation_iou": c.propagation_iou, "teacher_dice": c.teacher_dice,
                "propagation_dice": c.propagation_dice, "teacher_weight": c.weight,
                "used": c.source, "reason": c.reason,
            }
            for c in self.foreground()
        ]  # fmt: skip

    def to_dict(self) -> dict:
        """Plain values only (a checkpoint's ``extra``, JSON)."""
        return {
            "fair": self.fair, "method": self.method, "class_ids": list(self.class_ids),
            "held_out": [list(s) for s in self.held_out], "teacher_miou": self.teacher_miou,
            "propagation_miou": self.propagation_miou, "combined_miou": self.combined_miou,
            "note": self.note, "margin": self.margin, "classes": self.rows(),
            "scored_class_ids": list(self.scored_class_ids),
            "held_out_scores": [dict(s) for s in self.held_out_scores],
        }  # fmt: skip


def _names(names: Sequence[str]) -> str:
    return ", ".join(names)


def no_comparison(method: str, class_ids: Sequence[int], note: str) -> Comparison:
    """A :class:`Comparison` saying why none is possible; its combination is the teacher."""
    return Comparison(False, method, tuple(int(c) for c in class_ids), note=note)


def _choose(teacher: float, propagation: float, margin: float) -> tuple[float, str]:
    if np.isnan(teacher) and np.isnan(propagation):
        return 1.0, "on no held-out slice: the teacher by default"
    # NaN: the class is neither painted nor predicted on the held-out slices, which is right.
    t = 1.0 if np.isnan(teacher) else teacher
    p = 1.0 if np.isnan(propagation) else propagation
    if abs(t - p) < margin:
        return 0.5, f"level (within {margin:.2f} IoU): their mean"
    if t > p:
        return 1.0, f"teacher ahead by {t - p:.2f} IoU"
    return 0.0, f"propagation ahead by {p - t:.2f} IoU"


def mix(weights: np.ndarray, teacher: np.ndarray, propagation: np.ndarray) -> np.ndarray:
    """``w_c t_c + (1 - w_c) q_c`` renormalised over the class axis (axis 0), float32.

    Where both sources give every class 0 (e.g. a slice the propagation did not fill) the
    teacher's probabilities are kept.
    """
    w = np.asarray(weights, dtype=np.float32).reshape((-1,) + (1,) * (teacher.ndim - 1))
    t = np.asarray(teacher, dtype=np.float32)
    mixed = w * t + (1.0 - w) * np.asarray(propagation, dtype=np.float32)
    total = mixed.sum(axis=0, keepdims=True)
    return np.where(total > 0, mixed / np.maximum(total, 1e-12), t).astype(np.float32)


def _labels(probabilities: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    return np.asarray(class_ids)[np.asarray(probabilities).argmax(axis=0)]


def painted_classes(truth: np.ndarray, class_ids: Sequence[int]) -> tuple[int, ...]:
    """The foreground classes of ``class_ids`` painted somewhere in ``truth``."""
    present = {int(c) for c in np.unique(truth)}
    return tuple(int(c) for c in class_ids if c != 0 and int(c) in present)


def mean_iou_over(
    probabilities: np.ndarray, truth: np.ndarray, class_ids: Sequence[int], scored: Sequence[int]
) -> float:
    """mIoU of ``probabilities`` (channels in ``class_ids`` order) against ``truth`` over the
    classes ``scored`` only (one confusion matrix); NaN when ``scored`` is empty."""
    if not scored:
        return float("nan")
    iou = evaluate_semantic(_labels(probabilities, class_ids), truth, class_ids)["iou"]
    return float(np.mean([iou[int(c)] for c in scored]))


def compare_held_out(
    held_out: Sequence[HeldOut],
    class_ids: Sequence[int],
    method: str,
    *,
    margin: float = DEFAULT_MARGIN,
    class_names: Mapping[int, str] | None = None,
    note: str = "",
) -> Comparison:
    """Score both sources on the held-out slices and choose per class (see the module).

    Parameters
    ----------
    held_out:
        Each set of slices held out together with both sources' probabilities.
    class_ids:
        The class id of each probability channel, background first.
    method:
        The propagation method, for the text.
    margin:
        IoU difference below which the two sources are averaged.
    class_names:
        ``{class_id: name}`` for the text (others are called ``class <id>``).
    note:
        What was left out (kept in :attr:`Comparison.note`).

    Returns
    -------
    Comparison
        Not fair (the teacher alone) when ``held_out`` is empty.
    """
    ids = tuple(int(c) for c in class_ids)
    if not held_out:
        return no_comparison(method, ids, note or "the teacher held out no painted slice")
    names = dict(class_names or {})
    truth = np.concatenate([h.truth for h in held_out])
    teacher = np.concatenate([h.teacher for h in held_out], axis=1)
    propagation = np.concatenate([h.propagation for h in held_out], axis=1)
    scores = {
        "teacher": evaluate_semantic(_labels(teacher, ids), truth, ids),
        "propagation": evaluate_semantic(_labels(propagation, ids), truth, ids),
    }
    classes = []
    for class_id in ids:
        t_iou = scores["teacher"]["iou"].get(class_id, float("nan"))
        p_iou = scores["propagation"]["iou"].get(class_id, float("nan"))
        weight, reason = _choose(t_iou, p_iou, margin)
        name = names.get(class_id, "background" if class_id == 0 else f"class {class_id}")
        classes.append(
            ClassChoice(
                class_id, name,
                t_iou, p_iou, scores["teacher"]["dice"].get(class_id, float("nan")),
                scores["propagation"]["dice"].get(class_id, float("nan")), weight, reason,
            )
        )  # fmt: skip
    weights = np.asarray([c.weight for c in classes])
    combined = evaluate_semantic(_labels(mix(weights, teacher, propagation), ids), truth, ids)
    scored = painted_classes(truth, ids)
    per_set = tuple(
        {
            "slices": list(h.slices), "axes": list(h.axes),
            "teacher_miou": mean_iou_over(h.teacher, h.truth, ids, painted_classes(h.truth, ids)),
            "propagation_miou": mean_iou_over(
                h.propagation, h.truth, ids, painted_classes(h.truth, ids)
            ),
        }
        for h in held_out
    )  # fmt: skip
    return Comparison(
        True, method, ids, tuple(classes), tuple(tuple(h.slices) for h in held_out),
        scores["teacher"]["mean_iou"], scores["propagation"]["mean_iou"],
        combined["mean_iou"], note, margin, scored, per_set,
    )  # fmt: skip


def combine_probabilities(
    comparison: Comparison,
    teacher: np.ndarray,
    propagation: np.ndarray,
    labels: np.ndarray,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The combination of the two sources' stacks, slice by slice; painted slices keep their
    paint (one-hot).

    Parameters
    ----------
    comparison:
        Its :meth:`~Comparison.weights`, channels in its ``class_ids`` order.
    teacher, propagation:
        ``(K, N, H, W)`` probabilities (memory maps are read a slice at a time).
    labels:
        ``(N, H, W)`` the paint; a slice with any non-zero label is painted.
    out:
        Where to write (e.g. a memory map); a new float32 array when None.

    Returns
    -------
    np.ndarray
        ``(K, N, H, W)`` float32 probabilities.
    """
    if teacher.shape != propagation.shape or teacher.shape[1:] != np.shape(labels):
        raise ValueError(
            f"teacher {teacher.shape}, propagation {propagation.shape} and labels "
            f"{np.shape(labels)} must describe the same stack"
        )
    weights = comparison.weights()
    result = np.zeros(teacher.shape, dtype=np.float32) if out is None else out
    ids = np.asarray(comparison.class_ids).reshape(-1, 1, 1)
    for index in range(teacher.shape[1]):
        paint = np.asarray(labels[index])
        if paint.any():
            result[:, index] = paint[np.newaxis] == ids
        else:
            result[:, index] = mix(weights, teacher[:, index], propagation[:, index])
    return result
