"""Student training strategies, as data: the GUI lists them and builds their settings forms.

Every strategy is a :class:`StrategySpec` in :data:`STRATEGIES`: a name, a title and a
description for people, the frozen dataclass of its settings (each field has a default, so
``spec.config_class()`` is a valid configuration and ``dataclasses.fields`` describes the
form), and a builder returning a :class:`~napari_distill.core.training.TrainingRun` for the
student::

    run = STRATEGIES["kd"].build(
        teacher, image, labels, accepted,
        train_config=TrainConfig(), strategy_config=KDConfig(), device="auto",
    )
    for record in run.steps(): ...
    run.save("student.pt")

Builders accept the keyword arguments ``train_config``, ``strategy_config``, ``device``,
``pseudo_labels`` (the teacher's predicted labels when already computed), ``predict_config``,
``resume_from`` (a student checkpoint of the same strategy) and ``rgb``; a strategy that takes
more says so in :attr:`StrategySpec.inputs` (``mixed``: ``weak_labels`` and ``points``).
:func:`prediction_bundle` gives the model a student checkpoint predicts with (the branch or
network its settings name).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import KDConfig
from .configs import MixedConfig, MutualConfig
from .kd import build_kd
from .mixed import build_mixed, mixed_prediction, weak_slice_counts, weak_targets
from .mutual import build_mutual, mutual_prediction

if TYPE_CHECKING:
    from ..models import ModelBundle
    from ..training import TrainingRun

__all__ = [
    "STRATEGIES",
    "MixedConfig",
    "MutualConfig",
    "StrategySpec",
    "build_kd",
    "build_mixed",
    "build_mutual",
    "get_strategy",
    "prediction_bundle",
    "weak_slice_counts",
    "weak_targets",
]


@dataclass(frozen=True)
class StrategySpec:
    """One student training strategy.

    Attributes
    ----------
    name:
        Short identifier (CLI ``--strategy``, checkpoints' ``extra["strategy"]``).
    title:
        A human-readable name for menus.
    description:
        One or two sentences for tooltips and ``--help``.
    config_class:
        Frozen dataclass of the strategy's settings, every field with a default.
    build:
        ``build(teacher, image, labels, accepted, *, train_config, strategy_config, device,
        **options) -> TrainingRun``.
    inputs:
        Extra keyword inputs the builder takes beyond the common ones (``"weak_labels"``,
        ``"points"``); the GUI offers their pickers only for such a strategy.
    prediction:
        ``prediction(bundle) -> bundle`` choosing the model a checkpoint predicts with (None:
        the bundle's model as it is).
    """

    name: str
    title: str
    description: str
    config_class: type
    build: Callable[..., TrainingRun]
    inputs: tuple[str, ...] = ()
    prediction: Callable[[ModelBundle], ModelBundle] | None = None

    def default_config(self) -> Any:
        """The strategy's settings at their defaults."""
        return self.config_class()

    def config_fields(self) -> list[dataclasses.Field]:
        """The settings' fields (name, type, default) for building a form."""
        return list(dataclasses.fields(self.config_class))


STRATEGIES: dict[str, StrategySpec] = {
    "kd": StrategySpec(
        name="kd",
        title="Pixel-wise distillation (self-training)",
        description=(
            "The student learns the annotated slices' ground truth and the accepted slices' "
            "pseudo-labels, plus T^2 KL(teacher || student) on softened probabilities "
            "(Bhatt et al., ISBI 2023)."
        ),
        config_class=KDConfig,
        build=build_kd,
    ),
    "mixed": StrategySpec(
        name="mixed",
        title="Mixed supervision (scribbles, points, tags)",
        description=(
            "Full masks on some slices, scribbles or points on others: a teacher branch "
            "learns the full masks, a student branch the weak labels, plus KL(teacher || "
            "student) and entropy minimisation (Liu et al., MedIA 2022)."
        ),
        config_class=MixedConfig,
        build=build_mixed,
        inputs=("weak_labels", "points", "tags"),
        prediction=mixed_prediction,
    ),
    "mutual": StrategySpec(
        name="mutual",
        title="Mutual distillation (noisy masks)",
        description=(
            "Masks painted quickly or coarsely: two networks teach each other, each learning "
            "only the pixels its partner finds easy and its partner's most reliable "
            "predictions (Fang et al., IEEE TMI 2023)."
        ),
        config_class=MutualConfig,
        build=build_mutual,
        prediction=mutual_prediction,
    ),
}


def prediction_bundle(bundle: ModelBundle) -> ModelBundle:
    """The model ``bundle`` predicts with: for a student of a strategy with a choice (the
    ``mixed`` branch, the ``mutual`` network or the pair's average), the one its settings
    name; any other bundle as it is."""
    spec = STRATEGIES.get(str(bundle.extra.get("strategy")))
    if bundle.kind != "student" or spec is None or spec.prediction is None:
        return bundle
    return spec.prediction(bundle)


def get_strategy(name: str) -> StrategySpec:
    """The strategy called ``name``.

    Raises
    ------
    ValueError
        No such strategy (the message lists the known ones).
    """
    try:
        return STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown strategy {name!r}; choose one of: {known}") from None
