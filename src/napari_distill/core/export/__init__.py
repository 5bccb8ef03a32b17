"""Models that leave the tool: a teacher or student as a bioimage.io model package.

May import: models, inference, samples, io and the core's foundations; bioimageio.spec and
torch (bioimageio.spec only inside functions: it is an optional dependency, ``export``).
"""

from __future__ import annotations

from .bioimageio_package import (
    ExportError,
    ProbabilityModule,
    check_exportable,
    export_bioimageio,
    preprocessing_steps,
    test_input,
)

__all__ = [
    "ExportError",
    "ProbabilityModule",
    "check_exportable",
    "export_bioimageio",
    "preprocessing_steps",
    "test_input",
]
