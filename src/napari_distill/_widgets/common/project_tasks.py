"""What the widgets run in their workers for many images: one teacher or student trained on the
core's project stack, and a model's prediction of each image in turn (the core's batch in this
process: one prediction path with the command line's ``run --images``).

Generators of plain data (no layer is touched): the training ones yield the
:class:`~napari_distill.core.training.TrainingRun` first, then its steps, as the single-image
ones do, so :class:`~napari_distill._widgets.common.training_session.TrainingSession` drives
them unchanged (Stop, Resume, Save). The stack lives in a folder the widget keeps
(:class:`~napari_distill._widgets.common.project_layers.ProjectWork`) as long as the run may
resume.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from napari_distill._widgets.common.handoff import METADATA_KEY, SourceLayer
from napari_distill.core.batch import BatchProgress, VolumeOptions, failed_volumes, run_batch
from napari_distill.core.config import PredictConfig
from napari_distill.core.inference import Prediction
from napari_distill.core.io import ImageData
from napari_distill.core.models import ModelBundle
from napari_distill.core.project import (
    VIEWS_UNAVAILABLE,
    Project,
    ProjectImage,
    stack_of_project,
)
from napari_distill.core.strategies import get_strategy
from napari_distill.core.training import TrainingRun, TrainStep, plan_for_data, train_teacher


def project_teacher_training(
    images: Sequence[ProjectImage],
    work: Path,
    *,
    plan_given: Mapping[str, Any] | None,
    spacing: tuple[float, ...] | None,
    **kwargs: Any,
) -> Generator[TrainingRun | TrainStep, None, ModelBundle]:
    """One teacher on the painted slices of every image: the project's stack is written into
    ``work``, planned from its painted slices (keeping ``plan_given``; one axis, no views:
    :data:`~napari_distill.core.project.VIEWS_UNAVAILABLE`; None: the configs as they are),
    then trained.

    ``kwargs`` go to :func:`~napari_distill.core.training.train_teacher` (``model_config``,
    ``train_config``, ``device``, ``class_names``, ``resume_from``).
    """
    model_config = kwargs["model_config"]
    stack, _meta = stack_of_project(Project(tuple(images)), work, model_config.context_slices)
    plan = None
    if plan_given is not None and kwargs.get("resume_from") is None:
        plan = plan_for_data(
            stack.image, stack.labels, spacing=spacing, rgb=stack.rgb, device=kwargs["device"],
            given=plan_given, model_config=model_config, train_config=kwargs["train_config"],
            class_names=kwargs.get("class_names"), one_axis=VIEWS_UNAVAILABLE,
        )  # fmt: skip
    run = train_teacher(stack.image, stack.labels, rgb=stack.rgb, plan=plan, **kwargs)
    yield run
    return (yield from run.steps())


def project_student_training(
    strategy: str,
    teacher: ModelBundle,
    images: Sequence[ProjectImage],
    pseudo_labels: Mapping[str, Any],
    accepted: Mapping[str, Sequence[int]],
    work: Path,
    **kwargs: Any,
) -> Generator[TrainingRun | TrainStep, None, ModelBundle]:
    """One student on the painted slices of every image and the accepted pseudo-labels of
    each (``pseudo_labels``: each image's teacher labels, read once here; ``accepted``: each
    image's accepted unpainted slices).

    The stack is laid out as the teacher's was when the images come in the same order (the
    Teacher predicts them in its list's order), so the teacher's validation slices stay held
    out; otherwise the strategy splits the painted slices anew. ``kwargs`` go to the
    strategy's builder.
    """
    project = Project(tuple(images))
    stack, _meta = stack_of_project(project, work, teacher.model_config.context_slices)
    for name, labels in pseudo_labels.items():
        span = stack.span(name)
        stack.pseudo_labels[span.start : span.stop] = np.asarray(labels).reshape(
            (span.n, *stack.labels.shape[1:])
        )
    chosen = sorted(
        stack.to_global(name, int(i)) for name, slices in accepted.items() for i in slices
    )
    run = get_strategy(strategy).build(
        teacher, stack.image, stack.labels, chosen, pseudo_labels=stack.pseudo_labels,
        rgb=stack.rgb, **kwargs,
    )  # fmt: skip
    yield run
    return (yield from run.steps())


def predict_each(
    layers_of: Callable[[Prediction, SourceLayer], list],
    bundle: ModelBundle,
    items: Sequence[tuple[Any, SourceLayer]],
    device: str,
    mirror: bool,
    *,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> Generator[BatchProgress, None, list]:
    """Each ``(data, source)`` predicted by the core's batch in this process
    (:func:`~napari_distill.core.batch.run_batch` without a cluster: the per-image function of
    ``predict --out-dir`` and ``run --images``), probabilities kept for the hand-off; then
    ``layers_of(prediction, source)`` for each, all the layer data in order.
    ``extra[image name]`` is added to the first layer's hand-off dict (e.g. the labels layer
    the image was paired with).

    Raises
    ------
    ValueError
        An image's prediction failed (each failed image named with its error).
    """
    volumes = [
        ImageData(data, source.scale, source.rgb, Path(source.name)) for data, source in items
    ]
    options = VolumeOptions(
        config=PredictConfig(mirror=mirror), device=device, keep_probabilities=True
    )
    results = yield from run_batch(None, bundle, None, volumes, [None] * len(items), options)
    failed = failed_volumes(results)
    if failed:
        raise ValueError(failed)
    layers: list = []
    for result, (_, source) in zip(results, items, strict=True):
        made = layers_of(result.prediction, source)
        added = (extra or {}).get(source.name)
        if added:
            made[0][1]["metadata"][METADATA_KEY].update(added)
        layers += made
    return layers
