"""``report.md`` of a project's run: the run's numbers, then one row per image.

A project's reader asks first which images the student changed and how much of each it learnt
from: the per-image table says, for each image, its slices, the painted ones, the accepted
pseudo-labelled ones, their mean predicted quality and the files written for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageSummary:
    """What a run did with one image of a project."""

    name: str
    n_slices: int
    painted: int
    accepted: int
    scored: int
    mean_score: float
    teacher_labels: str
    labels: str


@dataclass(frozen=True)
class ProjectSummary:
    """The numbers of a project's run (Dice on the teacher's held-out painted slices)."""

    images: tuple[ImageSummary, ...]
    teacher_score: float | None
    student_score: float | None
    quality_spearman: float
    tau: float
    strategy: str
    pseudo_slices: int
    pseudo_slices_capped: bool
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    device: str = ""
    files: Mapping[str, str] = field(default_factory=dict)


def _number(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def render_project_report(summary: ProjectSummary) -> str:
    """The report as Markdown text."""
    total = sum(i.n_slices for i in summary.images)
    painted = sum(i.painted for i in summary.images)
    labelled = sum(1 for i in summary.images if i.painted)
    lines = [
        "# napari-distill project run",
        "",
        f"- Images: {len(summary.images)} ({labelled} painted, "
        f"{len(summary.images) - labelled} unlabelled), {total} slices, {painted} painted",
        f"- Teacher validation Dice (held-out painted slices): {_number(summary.teacher_score)}",
        f"- Student validation Dice (the same slices): {_number(summary.student_score)}",
        f"- Quality classifier Spearman (held-out painted slices): "
        f"{_number(summary.quality_spearman)}",
        f"- Strategy: {summary.strategy}; tau = {summary.tau:.2f}; the student learnt from "
        f"{summary.pseudo_slices} pseudo-labelled slice(s)"
        + (" (the best-scored, up to the cap)" if summary.pseudo_slices_capped else ""),
        "- Label propagation is not compared in a project run (it fills one volume from its "
        "own painted slices; most images of a project have none)",
    ]
    if summary.device:
        lines.append(f"- Device: {summary.device}")
    if summary.stage_seconds:
        times = ", ".join(f"{k} {v:.0f} s" for k, v in summary.stage_seconds.items())
        lines.append(f"- Time: {times}")
    lines += [
        "",
        "## Per image",
        "",
        "| image | slices | painted | accepted | mean score | teacher labels | labels |",
        "|---|---|---|---|---|---|---|",
    ]
    for i in summary.images:
        mean = "n/a" if not i.scored else f"{i.mean_score:.3f}"
        lines.append(
            f"| {i.name} | {i.n_slices} | {i.painted} | {i.accepted} | {mean} | "
            f"{i.teacher_labels} | {i.labels} |"
        )
    if summary.files:
        lines += ["", "## Files", ""]
        lines += [f"- `{name}`: {what}" for what, name in summary.files.items()]
    return "\n".join(lines) + "\n"


def write_project_report(path: str | os.PathLike[str], summary: ProjectSummary) -> Path:
    path = Path(path)
    path.write_text(render_project_report(summary))
    return path


def mean_score(scores: Sequence[float]) -> tuple[int, float]:
    """``(count, mean)`` of the finite values (0, NaN when none)."""
    finite = [float(s) for s in scores if not math.isnan(s)]
    return len(finite), (sum(finite) / len(finite) if finite else math.nan)
