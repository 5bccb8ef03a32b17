"""A project's predictions (the teacher's labels, then the student's, of every image) through
the batch code of ``predict --out-dir`` (:func:`~napari_distill.core.batch.run_batch`): one
task per image on a Dask cluster when a client is given, else the same per-image function in
this process, image after image. Either way the files and the results are the same.

Each image is a :class:`StackVolume`: its slices of the project's stack, which a worker reads
from the stack's file by path (the stack lives in the run's work folder inside ``out_dir``,
which a cluster's workers must see at the same path, as they must see ``predict --out-dir``'s
volumes). The teacher's probabilities and labels of each image stay on disk as memory maps
(:attr:`~napari_distill.core.batch.VolumeOptions.probabilities_dir`) until this process has
copied its labels into the pseudo-labels' map and scored its slices, then they are deleted.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..batch import BatchProgress, VolumeOptions, VolumeResult, run_batch
from ..config import InstanceConfig, PredictConfig
from ..inference import Prediction
from ..inference.predict import LABELS_FILE, PROBABILITIES_FILE
from ..io import ImageData
from ..models import ModelBundle
from ..models.checkpoint import checkpoint_dict
from ..preprocess import annotated_slices
from ..quality import QualityModel, Selection, score_slices
from .stack import ProjectStack


@dataclass(frozen=True)
class StackVolume:
    """Image ``name`` of a project: slices ``start`` to ``stop`` of the stack's image file
    (a 2D image, ``flat``, is its one slice, read as 2D), with its voxel size. Pickles as a
    path and numbers, so a Dask task carries no pixels."""

    name: str
    path: str
    start: int
    stop: int
    flat: bool
    rgb: bool
    scale: tuple[float, ...]
    unit: str | None = None

    def read(self) -> ImageData:
        stack = np.load(self.path, mmap_mode="r")
        data = stack[self.start] if self.flat else stack[self.start : self.stop]
        return ImageData(data, self.scale, self.rgb, Path(self.path), self.unit)


@dataclass(frozen=True)
class Placement:
    """Where a project's predictions run: ``client`` a ``distributed.Client`` (None: in this
    process on ``device``), ``threads`` torch's CPU threads on each worker."""

    device: torch.device
    client: Any | None = None
    worker_device: str = "cpu"
    threads: int | None = 1

    def options(self, config: PredictConfig, **kwargs: Any) -> VolumeOptions:
        device = str(self.device) if self.client is None else self.worker_device
        return VolumeOptions(config=config, device=device, overwrite=True, **kwargs)

    def checkpoint(self, bundle: ModelBundle) -> bytes | None:
        """The bytes of ``bundle``'s checkpoint, as a file would hold them, for the workers
        (None in process)."""
        if self.client is None:
            return None
        buffer = io.BytesIO()
        torch.save(checkpoint_dict(bundle), buffer)
        return buffer.getvalue()


def stack_volumes(stack: ProjectStack, meta: Sequence[Any]) -> list[StackVolume]:
    """Each image of ``stack`` (whose image is a memory-mapped file) as a :class:`StackVolume`;
    ``meta`` is each image's ``(scale, unit, 2D?)`` (:func:`~.pipeline.stack_of_project`)."""
    path = str(stack.image.filename)
    return [
        StackVolume(span.name, path, span.start, span.stop, flat, stack.rgb, scale, unit)
        for span, (scale, unit, flat) in zip(stack.spans, meta, strict=True)
    ]


class ProjectPredictionError(ValueError):
    """An image's prediction failed (on a worker, or here): its name and the error."""


def _check(result: VolumeResult, who: str) -> None:
    if result.status == "failed":
        message = f"the {who}'s prediction of {result.volume} failed: {result.error}"
        raise ProjectPredictionError(message)


def teacher_predictions(
    teacher: ModelBundle,
    quality: QualityModel,
    stack: ProjectStack,
    volumes: Sequence[StackVolume],
    outputs: Mapping[str, Path],
    *,
    config: PredictConfig,
    tau: float,
    place: Placement,
    work: Path,
) -> Generator[BatchProgress, None, dict[str, Selection]]:
    """Every image's teacher labels written to ``outputs[name]`` and copied into
    ``stack.pseudo_labels``, its slices scored by ``quality`` as each image ends (``tau``:
    the selection's threshold, painted slices kept); returns each image's selection, in
    the stack's order."""
    folder = work / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    batch = run_batch(
        place.client, teacher, place.checkpoint(teacher), volumes,
        [outputs[v.name] for v in volumes],
        place.options(config, probabilities_dir=str(folder)), chunk_slices=0,
        threads=place.threads,
    )  # fmt: skip
    selections: dict[str, Selection] = {}
    for progress in batch:
        yield progress
        if progress.result is None:
            continue
        _check(progress.result, "teacher")
        name = progress.result.volume
        span = stack.span(name)
        found = Path(progress.result.probabilities)
        labels = np.load(found / LABELS_FILE, mmap_mode="r")
        stack.pseudo_labels[span.start : span.stop] = labels
        prediction = Prediction(
            np.load(found / PROBABILITIES_FILE, mmap_mode="r"), labels, teacher.class_ids
        )
        scoring = score_slices(
            quality, stack.volume(name), prediction, device=place.device, rgb=stack.rgb
        )
        while True:  # the scoring's slices, counted in the volume that ended
            try:
                record = next(scoring)
            except StopIteration as stop:
                scores = stop.value
                break
            yield BatchProgress(progress.done, progress.total, None, record)
        painted = annotated_slices(stack.labels[span.start : span.stop])
        selections[name] = scores.selection(tau, painted.tolist())
        del prediction, labels
        shutil.rmtree(found, ignore_errors=True)  # the probabilities: scored, not needed
    return {span.name: selections[span.name] for span in stack.spans}


def student_predictions(
    student: ModelBundle,
    volumes: Sequence[StackVolume],
    outputs: Mapping[str, Path],
    *,
    config: PredictConfig,
    cleanup: InstanceConfig,
    place: Placement,
) -> Generator[BatchProgress, None, None]:
    """Every image's student labels, cleaned up as ``cleanup`` says, written to
    ``outputs[name]``."""
    batch = run_batch(
        place.client, student, place.checkpoint(student), volumes,
        [outputs[v.name] for v in volumes], place.options(config, cleanup=cleanup),
        chunk_slices=0, threads=place.threads,
    )  # fmt: skip
    for progress in batch:
        yield progress
        if progress.result is not None:
            _check(progress.result, "student")
