"""Helpers for the core's progress generators (they yield records and return a result)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

R = TypeVar("R")


def run_to_completion(
    generator: Generator[Any, Any, R], on_progress: Callable[[Any], None] | None = None
) -> R:
    """Exhaust a progress generator and return its return value.

    Parameters
    ----------
    generator:
        A generator such as :func:`napari_distill.core.inference.predict_stack`.
    on_progress:
        Called with every yielded record (e.g. to update a tqdm bar); None ignores them.
    """
    while True:
        try:
            record = next(generator)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(record)
