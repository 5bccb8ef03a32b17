"""Prediction: tiled sliding-window inference over slices and stacks.

One slice at a time is read (with its 2.5D context), cropped to the box around its tissue
(plus a margin of the network's receptive field), and predicted in one forward pass when it
fits in the device's memory, else in overlapping tiles blended with a Gaussian window; tiles
without tissue get the background class without a forward pass. The stack predictor is a
generator: it yields a :class:`PredictProgress` per slice and returns a :class:`Prediction`,
so the CLI draws tqdm, the GUI a progress bar, and stopping is simply not iterating further.

With ``out_dir``, outputs are ``.npy`` files written through memory maps whose pages are
released after every slice, so a stack larger than RAM (itself memory-mapped or dask) is
predicted with bounded memory.
"""

from __future__ import annotations

import logging
import mmap
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ..config import PredictConfig
from ..device import select_device
from ..preprocess import (
    Normalization,
    as_stack,
    input_channels,
    slice_input,
)
from .tiling import SlicePredictor
from .tissue import BackgroundModel, estimate_background

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

PROBABILITIES_FILE = "probabilities.npy"
LABELS_FILE = "labels.npy"


@dataclass(frozen=True)
class PredictProgress:
    """One slice predicted: ``done`` of ``total``; ``eta_s`` is None until a rate is known."""

    done: int
    total: int
    slice_index: int
    elapsed_s: float
    eta_s: float | None


@dataclass
class Prediction:
    """The result of :func:`predict_stack`.

    Attributes
    ----------
    probabilities:
        ``(K, N, H, W)`` softmax probabilities (float32 in memory, float16 in ``out_dir``), or
        None when not kept. Slices not predicted hold zeros.
    labels:
        ``(N, H, W)`` label values (class ids, not channel indices); slices not predicted
        hold the background id.
    class_ids:
        Class id of each probability channel.
    slices:
        The slices predicted, in order.
    """

    probabilities: np.ndarray | None
    labels: np.ndarray
    class_ids: tuple[int, ...]
    slices: tuple[int, ...] = field(default=())


def predict_slice_probabilities(
    model: nn.Module,
    slice_input: np.ndarray,
    config: PredictConfig,
    device: torch.device,
    *,
    tissue: np.ndarray | None = None,
) -> np.ndarray:
    """Softmax probabilities of one slice.

    Parameters
    ----------
    model:
        Any network mapping ``(B, C_in, H, W)`` to logits ``(B, K, H, W)``, already on
        ``device``. It runs in eval mode; its previous mode is restored afterwards.
    slice_input:
        ``(C_in, H, W)`` float32, as :func:`napari_distill.core.preprocess.slice_input` makes.
    config:
        Tiling settings. Tiles are used only when the slice does not fit in memory (or when
        ``config.tile_size`` is set).
    device:
        Where to compute.
    tissue:
        Optional ``(H, W)`` boolean tissue mask (:meth:`BackgroundModel.tissue_mask`); with it
        ``config.crop_to_tissue`` and ``config.skip_empty_tiles`` apply. Without it the whole
        slice is predicted.

    Returns
    -------
    np.ndarray
        ``(K, H, W)`` float32 probabilities summing to 1 over ``K``.
    """
    if slice_input.ndim != 3:
        raise ValueError(f"slice_input must be (C_in, H, W), got shape {slice_input.shape}")
    if tissue is not None and tissue.shape != slice_input.shape[1:]:
        raise ValueError(
            f"tissue mask of shape {tissue.shape} does not match the slice {slice_input.shape[1:]}"
        )
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            predictor = SlicePredictor(model, torch.device(device), config, slice_input.shape[0])
            return predictor.predict(slice_input, tissue)
    finally:
        model.train(was_training)


def _slice_indices(slices: Sequence[int] | None, n: int) -> list[int]:
    if slices is None:
        return list(range(n))
    indices = [int(i) for i in slices]
    bad = [i for i in indices if not 0 <= i < n]
    if bad:
        raise ValueError(f"slices {bad} are outside the stack of {n} slice(s)")
    return indices


def _check_model(model: nn.Module, in_channels: int, num_classes: int) -> None:
    config = getattr(model, "config", None)
    expected_in = getattr(config, "in_channels", in_channels)
    expected_k = getattr(config, "num_classes", num_classes)
    if expected_in != in_channels:
        raise ValueError(
            f"the model expects {expected_in} input channel(s) but the image and context give "
            f"{in_channels} (colour channels x (2 x context_slices + 1)): check the image "
            "(grey vs RGB) and context_slices"
        )
    if expected_k != num_classes:
        raise ValueError(
            f"the model has {expected_k} output classes but {num_classes} class ids were given"
        )


def _release_pages(array: Any) -> None:
    """Drop the resident pages of a shared file mapping (the data stays in the page cache).

    Keeps the resident memory of a pass over a huge memory-mapped stack bounded. numpy keeps
    the ``mmap`` of an ``np.memmap`` (and of its views) in ``_mmap``; copy-on-write maps
    (mode ``"c"``) are left alone since dropping their pages would discard changes.
    """
    handle = getattr(array, "_mmap", None)
    if handle is None or getattr(array, "mode", "c") == "c" or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        handle.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        logger.debug("madvise failed; resident memory may grow with the mapped stack")


def allocate_output(
    shape: tuple[int, ...], dtype: Any, out_dir: Path | None, name: str
) -> np.ndarray:
    if out_dir is None:
        return np.zeros(shape, dtype)  # calloc: pages of unpredicted slices are never touched
    path = out_dir / name
    if path.exists():
        logger.info("overwriting %s", path)
    return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def predict_stack(
    model: nn.Module,
    image: np.ndarray,
    *,
    normalization: Normalization,
    class_ids: Sequence[int],
    context_slices: int = 0,
    config: PredictConfig = PredictConfig(),  # noqa: B008 - frozen, never mutated
    device: str | torch.device = "auto",
    slices: Sequence[int] | None = None,
    keep_probabilities: bool = True,
    out_dir: str | Path | None = None,
    rgb: bool | None = None,
    background: BackgroundModel | None = None,
) -> Generator[PredictProgress, None, Prediction]:
    """Predict every slice (or ``slices``) of a stack, yielding progress after each slice.

    Parameters
    ----------
    model:
        The network; it is moved to ``device`` and run in eval mode (its mode is restored).
    image:
        ``(H, W)``, ``(H, W, 3)``, ``(N, H, W)`` or ``(N, H, W, 3)``; numpy, memory-mapped or
        dask. Only one slice and its context are read at a time.
    normalization, class_ids, context_slices:
        As the model was trained (see :func:`predict_bundle` to take them from a checkpoint).
    config:
        Tiling, cropping and empty-tile skipping.
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` or a ``torch.device``.
    slices:
        Slice indices to predict; None predicts all.
    keep_probabilities:
        Keep the ``(K, N, H, W)`` probabilities (else only labels).
    out_dir:
        Write ``probabilities.npy`` (float16) and ``labels.npy`` there as memory maps (existing
        files of those names are replaced) instead of holding them in memory.
    rgb:
        Whether the last axis is colour (None guesses as napari does).
    background:
        The background that tissue is told from (:func:`estimate_background` of ``image``
        when None). A chunk of slices cut from a larger volume passes the whole volume's, so
        that its slices are cropped, and so predicted, exactly as in the whole volume.

    Yields
    ------
    PredictProgress
        After every slice.

    Returns
    -------
    Prediction
        Probabilities and labels (memory maps with ``out_dir``).
    """
    stack = as_stack(image, rgb)
    n, height, width, colours = stack.shape
    ids = tuple(int(c) for c in class_ids)
    if len(normalization.low) != colours:
        raise ValueError(
            f"the normalisation has {len(normalization.low)} colour channel(s) but the image "
            f"of shape {image.shape} has {colours}"
        )
    in_channels = input_channels(colours, context_slices)
    _check_model(model, in_channels, len(ids))
    torch_device = select_device(device)
    indices = _slice_indices(slices, n)
    directory = None if out_dir is None else Path(out_dir)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    label_dtype = np.min_scalar_type(max(ids))
    labels = allocate_output((n, height, width), label_dtype, directory, LABELS_FILE)
    probabilities = None
    if keep_probabilities:
        prob_dtype = np.float16 if directory is not None else np.float32
        probabilities = allocate_output(
            (len(ids), n, height, width), prob_dtype, directory, PROBABILITIES_FILE
        )
    lut = np.asarray(ids, dtype=label_dtype)
    model.to(torch_device)
    predictor = SlicePredictor(model, torch_device, config, in_channels, len(ids))
    needs_tissue = config.crop_to_tissue or config.skip_empty_tiles
    if not needs_tissue:
        background = None
    elif background is None:
        background = estimate_background(stack)
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        for done, index in enumerate(indices, start=1):
            with torch.inference_mode():
                _predict_into(
                    predictor, stack, index, normalization, context_slices, background,
                    labels, probabilities, lut,
                )  # fmt: skip
            for array in (image, labels, probabilities):
                _release_pages(array)
            elapsed = time.perf_counter() - start
            eta = elapsed / done * (len(indices) - done)
            yield PredictProgress(done, len(indices), index, elapsed, eta)
    finally:
        model.train(was_training)
        for array in (labels, probabilities):
            if isinstance(array, np.memmap):
                array.flush()
    return Prediction(probabilities, labels, ids, tuple(indices))


def _predict_into(
    predictor: SlicePredictor,
    stack: np.ndarray,
    index: int,
    normalization: Normalization,
    context_slices: int,
    background: BackgroundModel | None,
    labels: np.ndarray,
    probabilities: np.ndarray | None,
    lut: np.ndarray,
) -> None:
    """Predict slice ``index`` and write its labels and probabilities."""
    config = predictor.config
    height, width = stack.shape[1:3]
    box: tuple[slice, slice] | None = (slice(0, height), slice(0, width))
    tissue = None
    if background is not None:
        tissue = background.tissue_mask(np.asarray(stack[index]))
        if config.crop_to_tissue:
            box = predictor.crop_box(tissue)
        elif not tissue.any():
            box = None
    full_slice = box is not None and box == (slice(0, height), slice(0, width))
    if not full_slice:  # background outside the box (or everywhere)
        labels[index] = lut[0]
        if probabilities is not None:
            probabilities[0, index] = 1
            probabilities[1:, index] = 0
    if box is None:
        return
    x = slice_input(stack, index, normalization, context_slices, region=box)
    skip = tissue[box] if tissue is not None and config.skip_empty_tiles else None
    probs = predictor.predict_region(x, skip)
    labels[(index, *box)] = lut[probs.argmax(axis=0)]
    if probabilities is not None:
        probabilities[(slice(None), index, *box)] = probs
