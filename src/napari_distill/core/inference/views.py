"""Three views of a volume: members of a teacher ensemble that slice the stack along each axis.

A painted slice of a CT stack is, seen from either of the two other axes, a painted *row* of
every slice along that axis. A network trained on those slices, with the loss taken on the
painted rows only (the rows between weigh nothing), learns how each organ continues through
the unpainted slices around a painted one: context a network on the painted slices alone
never sees. With :attr:`~napari_distill.core.config.ModelConfig.views`, member ``m`` of a
teacher ensemble slices the stack along axis ``m % 3``; the model's prediction is the mean of
every member's probabilities, each predicted along its own axis and moved back
(:func:`predict_views`). The idea is 3D U-Net's (Çiçek et al., 2016: a dense volume from a
few annotated slices, unannotated voxels left out of the loss) with 2D networks, one per axis.

Everything here works on the stack as ``(N, H, W, C)`` and moves an axis to the front with
:func:`numpy.moveaxis` (a view: memory maps stay on disk until a slice is read).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import PredictConfig, TrainConfig
from ..models import MemberMean, ModelBundle, ensemble_members
from ..preprocess import as_stack
from ..progress import run_to_completion
from .predict import (
    LABELS_FILE,
    PROBABILITIES_FILE,
    Prediction,
    PredictProgress,
    allocate_output,
    predict_stack,
)

logger = logging.getLogger(__name__)

MIN_VIEW_SLICES = 2  # a volume needs at least this many slices to be seen along its other axes
SUMS_FILE = ".views-sum.npy"  # with out_dir: the running sum, removed at the end


def view_of(stack: np.ndarray, axis: int) -> np.ndarray:
    """``stack`` (``(N, H, W[, C])``) sliced along ``axis``: that axis moved to the front.

    Rows of the view's slices are the stack's slices: along axis 1 each slice is ``(N, W)``,
    along axis 2 ``(N, H)``. A view of the array, never a copy.
    """
    return np.moveaxis(stack, axis, 0)


def check_volume(stack: np.ndarray) -> None:
    """Refuse views of an image that is not a volume of several slices.

    Raises
    ------
    ValueError
        One slice only.
    """
    if stack.shape[0] < MIN_VIEW_SLICES:
        raise ValueError(
            f"views slice a volume along its three axes, but the image has {stack.shape[0]} "
            "slice(s): turn views off for a single image"
        )


def row_bands(rows: Sequence[int], margin: int, extent: int) -> list[tuple[int, int]]:
    """Ranges ``[start, stop)`` of the first axis covering each of ``rows`` with ``margin``
    rows of context on each side (clipped to ``extent``), overlapping ranges merged."""
    bands: list[tuple[int, int]] = []
    for row in sorted({int(r) for r in rows}):
        start, stop = max(0, row - margin), min(extent, row + margin + 1)
        if bands and start <= bands[-1][1]:
            bands[-1] = (bands[-1][0], max(bands[-1][1], stop))
        else:
            bands.append((start, stop))
    return bands


def context_margin(bundle: ModelBundle) -> int:
    """Rows of context each side of a wanted slice: half a training patch, in image pixels."""
    patch = (bundle.train_config or TrainConfig()).patch_size
    return bundle.model_config.image_pixels(patch) // 2


def members_by_axis(bundle: ModelBundle) -> dict[int, list[nn.Module]]:
    """The networks of ``bundle`` grouped by the axis each slices along."""
    groups: dict[int, list[nn.Module]] = {}
    for index, member in enumerate(ensemble_members(bundle.model)):
        groups.setdefault(bundle.model_config.member_axis(index), []).append(member)
    return groups


def predict_views(
    bundle: ModelBundle,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),  # noqa: B008 - frozen, never mutated
    device: str | torch.device = "auto",
    slices: Sequence[int] | None = None,
    keep_probabilities: bool = True,
    out_dir: str | Path | None = None,
    rgb: bool | None = None,
    members: Mapping[int, list[nn.Module]] | None = None,
) -> Generator[PredictProgress, None, Prediction]:
    """:func:`~napari_distill.core.inference.predict_stack` for a teacher with views.

    The members of each axis predict the stack sliced along it (every feature of
    ``predict_stack``: tiles, cropping to tissue, skipped empty tiles, mirroring), over bands
    of the first axis around the wanted ``slices`` only; each member's probabilities are moved
    back to the stack's axes and the mean of all members' is the prediction. With ``out_dir``
    every intermediate result is a memory map there (removed at the end), so memory stays
    bounded as in ``predict_stack``. Progress counts the slices of every view predicted.
    ``members`` (``{axis: networks}``) predicts with those networks only, e.g. the members
    that held out a slice (:mod:`~napari_distill.core.inference.comparison`); None: every
    member of the teacher, each along its axis (:func:`members_by_axis`).
    """
    stack = as_stack(image, rgb)
    check_volume(stack)
    n, height, width = stack.shape[:3]
    wanted = list(range(n)) if slices is None else sorted({int(i) for i in slices})
    outside = [i for i in wanted if not 0 <= i < n]
    if outside:
        raise ValueError(f"slices {outside} are outside the stack of {n} slice(s)")
    groups = {a: list(m) for a, m in members.items() if m} if members else members_by_axis(bundle)
    ids = tuple(int(c) for c in bundle.class_ids)
    directory = None if out_dir is None else Path(out_dir)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    label_dtype = np.min_scalar_type(max(ids))
    labels = allocate_output((n, height, width), label_dtype, directory, LABELS_FILE)
    prob_dtype = np.float16 if directory is not None else np.float32
    # The members' probabilities summed in float32 (on disk beside the outputs with out_dir).
    sums = allocate_output((len(ids), n, height, width), np.float32, directory, SUMS_FILE)
    bands = row_bands(wanted, context_margin(bundle), n)
    # The first axis predicts the wanted slices themselves; the others, bands around them.
    plan = [(axis, [(0, n)] if axis == 0 else bands) for axis in sorted(groups)]
    total = sum(
        len(wanted) if axis == 0 else stack.shape[axis] * len(axis_bands)
        for axis, axis_bands in plan
    )
    done, start = 0, time.perf_counter()
    # rgb=True: the views are (N, H, W, C) already, whatever C is.
    predict = {"config": config, "device": device, "keep_probabilities": True, "rgb": True}
    try:
        for axis, axis_bands in plan:
            model = MemberMean(groups[axis]) if len(groups[axis]) > 1 else groups[axis][0]
            weight = np.float32(len(groups[axis]))
            for band_start, band_stop in axis_bands:
                part_dir = None if directory is None else directory / f".view-{axis}"
                view = view_of(stack[band_start:band_stop], axis)
                records = predict_stack(
                    model,
                    view,
                    normalization=bundle.normalization,
                    class_ids=ids,
                    context_slices=bundle.model_config.context_slices,
                    slices=wanted if axis == 0 else None,
                    out_dir=part_dir,
                    **predict,
                )
                while True:
                    try:
                        record = next(records)
                    except StopIteration as stop:
                        part = stop.value.probabilities
                        break
                    done += 1
                    elapsed = time.perf_counter() - start
                    yield PredictProgress(
                        done, total, record.slice_index, elapsed, elapsed / done * (total - done)
                    )
                # (K, view slices, band rows, other) -> (K, band rows, H, W)
                back = np.moveaxis(part, 1, axis + 1)
                for i in wanted:
                    if band_start <= i < band_stop:
                        sums[:, i] += weight * back[:, i - band_start].astype(np.float32)
                del part, back
                if part_dir is not None:
                    shutil.rmtree(part_dir, ignore_errors=True)
        members = np.float32(sum(len(group) for group in groups.values()))
        lut = np.asarray(ids, dtype=label_dtype)
        probabilities = None
        if keep_probabilities:
            probabilities = allocate_output(sums.shape, prob_dtype, directory, PROBABILITIES_FILE)
        for i in wanted:
            mean = sums[:, i] / members
            labels[i] = lut[mean.argmax(axis=0)]
            if probabilities is not None:
                probabilities[:, i] = mean
    finally:
        for array in (labels, sums):
            if isinstance(array, np.memmap):
                array.flush()
        if directory is not None:
            del sums
            (directory / SUMS_FILE).unlink(missing_ok=True)
    logger.info(
        "views: %s predicted along axes %s",
        "every slice" if slices is None else f"{len(wanted)} slice(s)",
        sorted(groups),
    )
    return Prediction(probabilities, labels, ids, tuple(wanted))


def views_probabilities(
    bundle: ModelBundle, stack: np.ndarray, slices: Sequence[int], device: str | torch.device
) -> dict[int, np.ndarray]:
    """The views teacher's probabilities ``{slice: (K, H, W)}`` on ``slices`` of ``stack``
    (``(N, H, W, C)``), for a student to distil from: such a teacher cannot predict a patch on
    its own (its members along the other axes need the stack). Held in memory: K float32
    values per pixel of these slices."""
    if not slices:
        return {}
    logger.info("the views teacher predicts the %d distilled slice(s) once", len(slices))
    prediction = run_to_completion(
        predict_views(bundle, stack, device=device, slices=slices, rgb=True)
    )
    probabilities = prediction.probabilities
    return {int(i): np.asarray(probabilities[:, i], np.float32) for i in slices}
