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
``resume_from`` (a student checkpoint of the same strategy) and ``rgb``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config import KDConfig
from .kd import build_kd

if TYPE_CHECKING:
    from ..training import TrainingRun

__all__ = ["STRATEGIES", "StrategySpec", "build_kd", "get_strategy"]


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
    """

    name: str
    title: str
    description: str
    config_class: type
    build: Callable[..., TrainingRun]

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
}


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
