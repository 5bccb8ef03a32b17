"""Scoring with the quality classifier: a predicted IoU for every slice's pseudo-label, and
beside it the teacher's own :func:`pseudo_label_confidence`, which needs no fitting (on the
synthetic Medaka sample it ranked the slices' true IoU far better than the classifier;
docs/benchmarks.md). :func:`score_slices` is re-exported by :mod:`.quality`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ..config import PredictConfig
from ..device import select_device
from ..inference import Prediction, PredictProgress, predict_bundle
from ..models import ModelBundle
from ..preprocess import as_stack, slice_input
from .model import QUALITY_KIND, QualityModel
from .selection import Selection
from .variants import quality_input

# Slices predicted by the teacher per pass while scoring: bounds the probabilities' memory.
SCORE_CHUNK = 32


# ------------------------------------------------------------------------------ scoring
def _check_teacher(quality: QualityModel, class_ids: Sequence[int], what: str) -> None:
    if tuple(int(c) for c in class_ids) != quality.class_ids:
        raise ValueError(
            f"the quality classifier was fitted for classes {list(quality.class_ids)}, but "
            f"{what} has classes {list(class_ids)}: fit it again with this teacher"
        )


def _teacher_probabilities(
    quality: QualityModel,
    stack: np.ndarray,
    image: np.ndarray,
    teacher: ModelBundle | Prediction | np.ndarray,
    indices: list[int],
    **predict: Any,
) -> Generator[PredictProgress, None, Generator[tuple[int, np.ndarray], None, None]]:
    """Predict (or take) the teacher's probabilities; return an iterator of (slice, (K,H,W))."""
    n = stack.shape[0]
    if isinstance(teacher, ModelBundle):
        if teacher.kind == QUALITY_KIND:
            raise ValueError("the teacher given is a quality classifier, not a teacher")
        _check_teacher(quality, teacher.class_ids, "the teacher")
        chunks: list[tuple[list[int], np.ndarray]] = []
        for start in range(0, len(indices), SCORE_CHUNK):
            # Chunks bound the memory of the probabilities; progress counts the whole stack.
            chunk = indices[start : start + SCORE_CHUNK]
            records = predict_bundle(teacher, image, slices=chunk, **predict)
            while True:
                try:
                    record = next(records)
                except StopIteration as stop:
                    chunks.append((chunk, stop.value.probabilities))
                    break
                yield dataclasses.replace(record, done=start + record.done, total=len(indices))
        return ((i, probs[:, i]) for chunk, probs in chunks for i in chunk)
    if isinstance(teacher, Prediction):
        _check_teacher(quality, teacher.class_ids, "the prediction")
        probabilities = teacher.probabilities
        if probabilities is None:
            raise ValueError("the prediction holds no probabilities (keep_probabilities=False)")
    else:
        probabilities = np.asarray(teacher) if not hasattr(teacher, "shape") else teacher
    expected = (len(quality.class_ids), n, *stack.shape[1:3])
    if tuple(probabilities.shape) != expected:
        raise ValueError(
            f"teacher probabilities of shape {tuple(probabilities.shape)} do not match the "
            f"image: expected {expected} (classes, slices, height, width)"
        )
    return ((i, np.asarray(probabilities[:, i], np.float32)) for i in indices)


def pseudo_label_confidence(probabilities: np.ndarray, background: int | None = 0) -> float:
    """The teacher's confidence in its pseudo-label of one slice, in [0, 1].

    The mean top-class probability over the pixels the teacher labels foreground (its argmax is
    not channel ``background``); over the whole slice when it labels none there (or when there
    is no background channel), so an empty pseudo-label the teacher hesitated over scores low.
    Background pixels are left out otherwise: they fill most of a CT slice and would drown the
    organs' doubts.

    Parameters
    ----------
    probabilities:
        ``(K, H, W)`` softmax probabilities of one slice.
    background:
        The channel of class 0, or None.
    """
    probabilities = np.asarray(probabilities, dtype=np.float32)
    top = probabilities.max(axis=0)
    if background is not None:
        foreground = probabilities.argmax(axis=0) != background
        if foreground.any():
            return float(top[foreground].mean())
    return float(top.mean())


@dataclasses.dataclass(frozen=True)
class SliceScores:
    """Two ratings of the teacher's pseudo-label of every slice, NaN where not scored.

    Attributes
    ----------
    quality:
        ``(N,)`` the quality classifier's predicted IoU.
    confidence:
        ``(N,)`` the teacher's :func:`pseudo_label_confidence`.
    """

    quality: np.ndarray
    confidence: np.ndarray

    def selection(self, tau: float, annotated: Iterable[int] = ()) -> Selection:
        """The :class:`Selection` at ``tau`` (on the score), with the confidence kept."""
        return Selection.from_scores(self.quality, tau, annotated, confidence=self.confidence)


def score_slices(
    quality: QualityModel,
    image: np.ndarray,
    teacher: ModelBundle | Prediction | np.ndarray,
    slices: Sequence[int] | None = None,
    *,
    device: str | torch.device = "auto",
    predict_config: PredictConfig = PredictConfig(),  # noqa: B008 - frozen
    rgb: bool | None = None,
) -> Generator[PredictProgress, None, np.ndarray]:
    """Rate the teacher's pseudo-label of every slice (or of ``slices``).

    Parameters
    ----------
    quality:
        The fitted classifier.
    image:
        The stack (as the teacher takes it).
    teacher:
        A teacher :class:`ModelBundle` (it predicts the slices with the stack predictor,
        yielding its progress), a :class:`~napari_distill.core.inference.Prediction` with
        probabilities, or the probabilities ``(K, N, H, W)`` themselves.
    slices:
        Slices to score; None scores all.

    Yields
    ------
    PredictProgress
        While the teacher predicts (with a bundle), then per slice scored.

    Returns
    -------
    SliceScores
        ``(N,)`` float32 predicted IoU and teacher confidence per slice; NaN for slices not
        scored.
    """
    stack = as_stack(image, rgb)
    n = stack.shape[0]
    if stack.shape[-1] != quality.n_colours:
        raise ValueError(
            f"the quality classifier was fitted on images with {quality.n_colours} colour "
            f"channel(s), the image of shape {np.shape(image)} has {stack.shape[-1]}"
        )
    indices = list(range(n)) if slices is None else sorted({int(i) for i in slices})
    outside = [i for i in indices if not 0 <= i < n]
    if outside:
        raise ValueError(f"slices {outside} are outside the stack of {n} slice(s)")
    torch_device = select_device(device)
    pairs = yield from _teacher_probabilities(
        quality, stack, image, teacher, indices, config=predict_config, device=torch_device, rgb=rgb
    )
    scores = np.full(n, np.nan, np.float32)
    confidence = np.full(n, np.nan, np.float32)
    background = quality.class_ids.index(0) if 0 in quality.class_ids else None
    quality.net.to(torch_device)
    for done, (index, probs) in enumerate(pairs, start=1):
        x = slice_input(stack, index, quality.normalization, 0)
        features = quality_input(x, probs, quality.config.input_size)[None]
        scores[index] = quality.predict(features, torch_device)[0][0]
        confidence[index] = pseudo_label_confidence(probs, background)
        yield PredictProgress(done, len(indices), index, 0.0, None)
    return SliceScores(scores, confidence)
