"""Predict the painted slices a teacher held out, by its members and by propagation, and compare.

:func:`compare_with_propagation` is a generator of :class:`ComparisonProgress` returning a
:class:`~napari_distill.core.evaluation.comparison.Comparison`. No network is trained for it:
the members of a teacher ensemble held out different painted slices
(:func:`~napari_distill.core.training.splits.member_splits`, stored in the checkpoint; the
caller passes :func:`~napari_distill.core.training.splits.stored_splits`), so the members that
held out a set of slices predict them, and propagation predicts the same slices from the
painted slices with the same ones erased.

A teacher that held out no painted slice (a single network validated on its training slices,
or too few painted slices) has no fair comparison: training 3 teachers (``--teachers 3``, the
widget's *Teachers*) gives each member other slices to hold out. The members of a views
teacher that slice along another axis held out their own painted slices too (their loss
weighs only the rows of their training slices): they predict a held-out slice through the
volume, along their axis (:func:`~napari_distill.core.inference.views.predict_views` with those
members alone), as the teacher predicts it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import PredictConfig, PropagationConfig
from ..evaluation.comparison import Comparison, HeldOut, compare_held_out, no_comparison
from ..models import MemberMean, ModelBundle, ensemble_members
from ..preprocess import labels_as_stack
from .flow import NeighbourFlows
from .predict import predict_stack
from .propagation import propagate
from .views import predict_views

NO_HELD_OUT = (
    "the teacher trained on every painted slice, so none is left to score it on; train "
    "3 teachers (--teachers 3, or Teachers in the widget) on 3 or more painted slices with a "
    "validation fraction above 0: each network then holds out other slices"
)
NO_HELD_OUT_ENSEMBLE = (
    "the teacher's networks trained on every painted slice, so none is left to score them on: "
    "a slice is never held out when it holds the only painting of some class (paint each "
    "class on two slices or more)"
)


# CPU seconds per pixel of one TV-L1 flow estimated and followed (0.24 s at 256 x 128 on the
# benchmarks' 2-core VM, docs/benchmarks.md "Label propagation"): what a quick comparison may
# spend is counted in these.
FLOW_SECONDS_PER_PIXEL = 0.24 / (256 * 128)
QUICK_SECONDS = 30.0  # what a command may add to a run to log the comparison


@dataclass(frozen=True)
class ComparisonProgress:
    """``source`` (``"teacher"`` or ``"propagation"``) predicting held-out set ``done`` of
    ``total``; ``detail`` is that source's own record."""

    source: str
    done: int
    total: int
    detail: Any = None


def held_out_groups(
    bundle: ModelBundle, splits: Sequence[tuple[Sequence[int], Sequence[int]]]
) -> tuple[dict[tuple[int, ...], list[int]], str]:
    """Members grouped by the painted slices they held out (never trained on), and a note
    (the views members among them, which predict along their own axis)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for member, (training, validation) in enumerate(splits):
        held = tuple(sorted(int(i) for i in set(validation) - set(training)))
        if held:
            groups.setdefault(held, []).append(member)
    other_axis = sum(
        bundle.model_config.member_axis(m) != 0 for group in groups.values() for m in group
    )
    note = ""
    if other_axis:
        note = (
            f"{other_axis} views network(s) predict their held-out slices through the volume, "
            "along their own axis"
        )
    return groups, note


def _group_prediction(
    bundle: ModelBundle, group: Sequence[int], image: Any, slices: Sequence[int], **kwargs: Any
) -> Generator:
    """The prediction of ``slices`` by the members in ``group`` alone (a views teacher's along
    their axes, through the volume)."""
    members = ensemble_members(bundle.model)
    ids = tuple(int(c) for c in bundle.class_ids)
    if bundle.model_config.views:
        by_axis: dict[int, list] = {}
        for m in group:
            by_axis.setdefault(bundle.model_config.member_axis(m), []).append(members[m])
        return predict_views(bundle, image, slices=slices, members=by_axis, **kwargs)
    return predict_stack(
        MemberMean([members[m] for m in group]), image, normalization=bundle.normalization,
        class_ids=ids, context_slices=bundle.model_config.context_slices, slices=slices,
        **kwargs,
    )  # fmt: skip


def held_out_flows(labels: np.ndarray, held_out: Sequence[Sequence[int]]) -> int:
    """Flows between neighbouring slices that propagating into the held-out slices follows
    (each held-out set erased in turn; an upper bound: a flow is counted once per set)."""
    painted = {int(i) for i in np.flatnonzero(labels_as_stack(np.asarray(labels)).any(axis=(1, 2)))}
    total = 0
    for held in held_out:
        others = sorted(painted - {int(i) for i in held})
        for index in held:
            below = [i for i in others if i < index]
            above = [i for i in others if i > index]
            total += (index - below[-1] if below else 0) + (above[0] - index if above else 0)
    return total


def quick_method(
    bundle: ModelBundle,
    image_shape: Sequence[int],
    labels: np.ndarray,
    splits: Sequence[tuple[Sequence[int], Sequence[int]]],
    budget_s: float = QUICK_SECONDS,
) -> tuple[str, str]:
    """``"flow"`` when its comparison should take at most ``budget_s`` CPU seconds, else
    ``"nearest"`` (instant); and the reason, in words."""
    groups, _ = held_out_groups(bundle, splits)
    flows = held_out_flows(labels, list(groups))
    pixels = int(image_shape[1]) * int(image_shape[2])
    seconds = flows * pixels * FLOW_SECONDS_PER_PIXEL
    if seconds <= budget_s:
        return "flow", f"{flows} flows, about {seconds:.0f} CPU s"
    return "nearest", (
        f"flow propagation would follow {flows} flows of {pixels} pixels (about "
        f"{seconds:.0f} CPU s); compare with it by `napari-distill run`, or propagate with "
        "`napari-distill propagate --method flow`"
    )


def _aligned(probabilities: np.ndarray, ids: Sequence[int], wanted: Sequence[int]) -> np.ndarray:
    """Channels reordered to ``wanted`` (a class missing from ``ids`` gets zeros)."""
    where = {int(c): k for k, c in enumerate(ids)}
    out = np.zeros((len(wanted), *probabilities.shape[1:]), dtype=np.float32)
    for k, class_id in enumerate(wanted):
        if int(class_id) in where:
            out[k] = probabilities[where[int(class_id)]]
    return out


def compare_with_propagation(
    bundle: ModelBundle,
    image: Any,
    labels: np.ndarray,
    splits: Sequence[tuple[Sequence[int], Sequence[int]]],
    propagation: PropagationConfig = PropagationConfig(),  # noqa: B008 - frozen, never mutated
    *,
    predict_config: PredictConfig = PredictConfig(),  # noqa: B008 - frozen, never mutated
    device: str | torch.device = "auto",
    rgb: bool | None = None,
    flows: NeighbourFlows | None = None,
    margin: float | None = None,
    class_names: Mapping[int, str] | None = None,
) -> Generator[ComparisonProgress, None, Comparison]:
    """The teacher against propagation on the painted slices its members held out.

    Parameters
    ----------
    bundle:
        The teacher.
    image, labels:
        The stack and its paint (as the teacher was trained on).
    splits:
        Each member's (training, validation) slices, as stored with the teacher.
    propagation:
        The propagation method and its flow settings.
    predict_config, device, rgb:
        As for :func:`~napari_distill.core.inference.predict_stack`.
    flows:
        Flows to share (e.g. with the propagation of the whole stack); None estimates the
        ones needed.
    margin:
        IoU difference below which the two are averaged (None: the default).
    class_names:
        Names for the text (None: the teacher's).

    Returns
    -------
    Comparison
        Per class scores and the choice; not fair when no slice was held out.
    """
    ids = tuple(int(c) for c in bundle.class_ids)
    groups, note = held_out_groups(bundle, splits)
    if not groups:
        # Several networks with slices to spare would have held some out: what kept them all
        # in is the only-painting rule, which more teachers do not change.
        fraction = bundle.train_config.validation_fraction if bundle.train_config else 0.0
        several = bundle.model_config.members > 1 and fraction > 0
        why = NO_HELD_OUT_ENSEMBLE if several else NO_HELD_OUT
        return no_comparison(propagation.method, ids, why)
    paint = labels_as_stack(np.asarray(labels))
    if propagation.method == "flow" and flows is None:
        flows = NeighbourFlows(image, propagation, rgb=rgb)
    held_out = []
    for done, (slices, group) in enumerate(groups.items()):
        teacher = yield from _records(
            "teacher", done, len(groups),
            _group_prediction(
                bundle, group, image, slices, config=predict_config, device=device, rgb=rgb
            ),
        )  # fmt: skip
        # Like the networks that predict them, propagation never sees these slices' paint: it
        # reaches them from the remaining painted slices only.
        others = np.array(paint)
        others[list(slices)] = 0
        propagated = yield from _records(
            "propagation", done, len(groups),
            propagate(image, others, propagation, slices=slices, rgb=rgb, flows=flows),
        )  # fmt: skip
        assert teacher.probabilities is not None and propagated.probabilities is not None
        index = list(slices)
        held_out.append(
            HeldOut(
                slices,
                paint[index],
                _aligned(np.asarray(teacher.probabilities[:, index]), ids, ids),
                _aligned(np.asarray(propagated.probabilities[:, index]), propagated.class_ids, ids),
                tuple(bundle.model_config.member_axis(m) for m in group),
            )
        )
    names = bundle.class_names if class_names is None else class_names
    kwargs = {} if margin is None else {"margin": margin}
    return compare_held_out(
        held_out, ids, propagation.method, class_names=names, note=note, **kwargs
    )


def _records(source: str, done: int, total: int, records: Generator) -> Generator:
    while True:
        try:
            record = next(records)
        except StopIteration as stop:
            return stop.value
        yield ComparisonProgress(source, done, total, record)


__all__ = [
    "NO_HELD_OUT",
    "NO_HELD_OUT_ENSEMBLE",
    "FLOW_SECONDS_PER_PIXEL",
    "QUICK_SECONDS",
    "ComparisonProgress",
    "compare_with_propagation",
    "held_out_flows",
    "held_out_groups",
    "quick_method",
]
