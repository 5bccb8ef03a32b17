"""What the Quality review's *All images* tab runs in its worker: the quality classifier fitted
on the painted slices of every image of a teacher's project, then every image's slices scored
from its teacher prediction, as one :class:`~napari_distill.core.quality.ProjectSelection`.

Plain data in and out (no layer is touched). The fit reads the core's project stack of the
painted images (:func:`napari_distill.core.project.stack_of_project`); scoring reads each
image's own data and its prediction's probabilities, one image at a time.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_distill.core.config import QualityConfig
from napari_distill.core.models import ModelBundle
from napari_distill.core.project import Project, ProjectImage, stack_of_project
from napari_distill.core.quality import QualityModel, fit_quality, score_slices
from napari_distill.core.quality.project_selection import ProjectSelection


@dataclass(frozen=True)
class ImageToScore:
    """One image's data, its teacher probabilities ``(K, N, H, W)`` and its painted slices."""

    name: str
    data: Any
    probabilities: Any
    annotated: tuple[int, ...]
    rgb: bool


@dataclass(frozen=True)
class Stage:
    """A progress record of the tab's job: what runs (``text``), ``done`` of ``total``."""

    text: str
    done: int
    total: int


def _staged(records: Generator[Any, None, Any], text: str) -> Generator[Stage, None, Any]:
    """``records`` as :class:`Stage` s (a training step or a prediction's progress); returns
    what ``records`` returns."""
    while True:
        try:
            record = next(records)
        except StopIteration as stop:
            return stop.value
        done = getattr(record, "done", None)
        if done is None:
            done = getattr(record, "step", 0)
        total = getattr(record, "total", None) or getattr(record, "total_steps", 0) or 0
        yield Stage(text, int(done), int(total))


def fit_and_score(
    teacher: ModelBundle,
    painted: Sequence[ProjectImage],
    images: Sequence[ImageToScore],
    work: Path,
    *,
    config: QualityConfig,
    device: str,
    quality: QualityModel | None = None,
) -> Generator[Stage, None, tuple[QualityModel, ProjectSelection]]:
    """Fit the classifier on the ``painted`` images' stack (unless ``quality`` is given),
    then score each image; the classifier and the selection at ``config.tau``."""
    if quality is None:
        project = Project(tuple(painted))
        stack, _meta = stack_of_project(project, work, teacher.model_config.context_slices)
        quality = yield from _staged(
            fit_quality(
                teacher, stack.image, stack.labels, config=config, device=device, rgb=stack.rgb
            ),
            f"Fitting on the painted slices of {len(painted)} image(s)",
        )
        del stack
    selections = {}
    for number, item in enumerate(images, start=1):
        scores = yield from _staged(
            score_slices(quality, item.data, item.probabilities, device=device, rgb=item.rgb),
            f"Scoring '{item.name}' ({number} of {len(images)})",
        )
        selections[item.name] = scores.selection(config.tau, item.annotated)
    return quality, ProjectSelection(selections)
