"""Many images, one project (issue 26): which images and labels (:mod:`.files`: matched by
name, TOML or JSON project files), one memory-mapped stack of their slices that never mixes
2.5D context across volumes (:mod:`.stack`), the run that trains one teacher and one student
from all of them (:mod:`.pipeline`), and its per-image report (:mod:`.report`).

The top of the core's layers: it may import every other stage, the one-image pipeline included.
"""

from __future__ import annotations

from .files import Project, ProjectError, ProjectImage, load_project, project_from_paths
from .pipeline import run_project_pipeline, stack_of_project
from .stack import VIEWS_UNAVAILABLE, ProjectStack, build_project_stack

__all__ = [
    "VIEWS_UNAVAILABLE",
    "Project",
    "ProjectError",
    "ProjectImage",
    "ProjectStack",
    "build_project_stack",
    "load_project",
    "project_from_paths",
    "run_project_pipeline",
    "stack_of_project",
]
