"""The teacher against label propagation in a command's log (``train-teacher``).

After training, the painted slices the teacher's networks held out are predicted by them and by
propagation from the other painted slices (:func:`napari_distill.core.inference.
compare_with_propagation`), and each class's two scores are logged with the source the
pipeline (``run``) would use for it. Flow propagation is used when it should cost at most
:data:`~napari_distill.core.inference.comparison.QUICK_SECONDS` CPU seconds, else the
nearest painted slice (instant); the log says which and why. A teacher that held out no slice
gets one line saying how to get a fair comparison.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from napari_distill.core.config import PropagationConfig
from napari_distill.core.models import ModelBundle
from napari_distill.core.preprocess import as_stack

log = logging.getLogger("napari_distill")


def log_comparison(
    teacher: ModelBundle, image: Any, labels: np.ndarray, device: str, quiet: bool = False
) -> None:
    """Compute the comparison of ``teacher`` with propagation and log it (never raises for
    the comparison's sake: training has succeeded by then)."""
    from napari_distill.cli._base import drive
    from napari_distill.core.inference.comparison import compare_with_propagation, quick_method
    from napari_distill.core.training import stored_splits

    splits = stored_splits(teacher)
    try:
        method, why = quick_method(teacher, as_stack(image).shape, labels, splits)
        log.info("teacher vs propagation: %s propagation (%s)", method, why)
        comparison = drive(
            compare_with_propagation(
                teacher, image, labels, splits, PropagationConfig(method=method), device=device
            ),
            desc="teacher vs propagation",
            quiet=quiet,
        )
    except (ValueError, MemoryError) as error:
        log.warning("teacher vs propagation: not compared (%s)", error)
        return
    log.info("%s", comparison.summary())
    for row in comparison.rows():
        log.info(
            "  %-20s teacher IoU %s, propagation IoU %s: %s",
            row["name"], _number(row["teacher_iou"]), _number(row["propagation_iou"]),
            row["reason"],
        )  # fmt: skip


def _number(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
