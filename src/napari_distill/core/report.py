"""The pipeline's human-readable output: ``report.md`` and a plot of the per-slice scores.

Plots use matplotlib's Agg canvas directly (no pyplot, no GUI backend), so writing a report
never opens a window nor needs a display, and works inside napari's threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .evaluation import Comparison
from .training import MIN_SLICES_FOR_EARLY_STOPPING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LEAST_CONFIDENT_LISTED = 5  # unannotated slices the report names for a look before distilling


@dataclass(frozen=True)
class RunSummary:
    """The numbers of one pipeline run.

    Attributes
    ----------
    n_slices:
        Slices in the stack.
    annotated:
        Annotated slices (ground truth).
    validation:
        Annotated slices held out to validate teacher and student.
    teacher_score, student_score:
        Mean foreground Dice on the validation slices (None without validation slices).
    quality_spearman:
        Rank correlation of the quality classifier's score with the true IoU on held-out
        annotated slices (NaN when too few slices).
    tau:
        Score threshold for accepting a slice.
    accepted:
        Unannotated slices accepted (score >= tau, or overruled by the user).
    strategy:
        The student's strategy name.
    score_agreement:
        Spearman correlation between the classifier's score and the teacher's confidence over
        the unannotated slices (NaN when not measured): low values mean the two disagree on
        which pseudo-labels are bad, and the slices deserve a look.
    least_confident:
        The unannotated slices the teacher is least sure of, least sure first.
    teachers:
        Networks in the teacher (an ensemble when > 1; the student is one network).
    views:
        Whether the teacher's networks slice the volume along its three axes.
    member_validation:
        The slices each member of an ensemble held out, when they differ (the teacher's
        validation Dice is then the members' mean, each on its own; the first member's are
        ``validation``, the student's).
    stage_seconds:
        Wall-clock seconds per stage.
    device:
        What computed it (e.g. ``"cpu (2 threads)"``).
    files:
        ``{what: file name}`` written next to the report.
    comparison:
        The teacher against label propagation on the painted slices the teacher held out,
        and which source the pseudo-labels took per class (None: not compared).
    """

    n_slices: int
    annotated: tuple[int, ...]
    validation: tuple[int, ...]
    teacher_score: float | None
    student_score: float | None
    quality_spearman: float
    tau: float
    accepted: tuple[int, ...]
    strategy: str
    score_agreement: float = math.nan
    least_confident: tuple[int, ...] = ()
    teachers: int = 1
    views: bool = False
    member_validation: tuple[tuple[int, ...], ...] = ()
    stage_seconds: Mapping[str, float] = field(default_factory=dict)
    device: str = "cpu"
    files: Mapping[str, str] = field(default_factory=dict)
    comparison: Comparison | None = None


def _number(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{seconds:.1f} s"


def _slice_list(slices: Sequence[int], limit: int = 30) -> str:
    shown = ", ".join(str(i) for i in list(slices)[:limit])
    return shown + (f", ... ({len(slices)} in all)" if len(slices) > limit else "")


def _teacher_text(summary: RunSummary) -> str:
    teachers, member_validation, views = (
        summary.teachers,
        summary.member_validation,
        summary.views,
    )
    if teachers == 1:
        return "one network"
    text = f"an ensemble of {teachers} networks (the mean of their probabilities)"
    if views:
        text = (
            f"an ensemble of {teachers} networks slicing the volume along its three axes in "
            "turn (the mean of their probabilities, each predicted along its own axis)"
        )
    if member_validation:
        held_out = "; ".join(_slice_list(slices) for slices in member_validation)
        text += (
            f", each validated on the slices it held out ({held_out}): its validation Dice is "
            "their mean"
        )
    return text


def _student_comparison(summary: RunSummary) -> str:
    """The student's score against the teacher's, when both were scored on the same slices."""
    teacher, student = summary.teacher_score, summary.student_score
    if student is None:
        return " |"
    if summary.member_validation:  # the teacher's score is its networks' on their own slices
        return (
            f" (on slice(s) {_slice_list(summary.validation)}; not compared with the teacher's, "
            "a mean over other slices) |"
        )
    return " |" if teacher is None else f" ({student - teacher:+.3f} vs the teacher) |"


def _few_validation_slices_caveat(n_validation: int) -> list[str]:
    # As few as teachers refuse to stop early on: too noisy to rank two models by.
    if not 0 < n_validation < MIN_SLICES_FOR_EARLY_STOPPING:
        return []
    return [
        "",
        f"**{n_validation} validation slice(s) only**: these scores are noisy, and a student "
        "that scores higher on them can still be worse than its teacher on the other slices "
        "(docs/benchmarks.md). Look at both label layers before keeping one, or annotate more "
        "slices for a score worth ranking them by.",
    ]


def render_report(summary: RunSummary, plot_name: str | None = "scores.png") -> str:
    """The Markdown text of ``report.md``."""
    unannotated = summary.n_slices - len(summary.annotated)
    total = sum(summary.stage_seconds.values())
    lines = [
        "# napari-distill run",
        "",
        "| | |",
        "|---|---|",
        f"| slices | {summary.n_slices} |",
        f"| annotated slices | {len(summary.annotated)} ({_slice_list(summary.annotated)}) |",
        f"| validation slice indices | {_slice_list(summary.validation) or 'none'} |",
        f"| teacher | {_teacher_text(summary)} |",
        f"| teacher validation Dice | {_number(summary.teacher_score)} |",
        f"| quality classifier Spearman (held-out) | {_number(summary.quality_spearman)} |",
        f"| quality score vs teacher confidence (Spearman) | {_number(summary.score_agreement)} |",
        f"| slices the teacher is least sure of | "
        f"{_slice_list(summary.least_confident) or 'n/a'} |",
        f"| slices accepted at tau = {summary.tau:g} | {len(summary.accepted)} of "
        f"{unannotated} unannotated |",
        f"| student ({summary.strategy}) validation Dice | {_number(summary.student_score)}"
        + _student_comparison(summary),
        f"| device | {summary.device} |",
        f"| total time | {_duration(total)} |",
        "",
        "Validation Dice is the mean over foreground classes on annotated slices that neither "
        "model trained on" + ("." if summary.validation else " (none: annotate >= 3 slices)."),
        *_few_validation_slices_caveat(len(summary.validation)),
        "",
        "The quality classifier learns from worsened copies of the annotated slices' "
        "predictions; the teacher's confidence (its mean top-class probability over what it "
        "labels foreground) needs no fitting. Before distilling, look at the least sure "
        "slices, and at any accepted slice the two disagree on (the Quality widget's table "
        "shows both; *Rank by* walks either).",
        "",
        "## Time per stage",
        "",
        "| stage | time |",
        "|---|---|",
        *(f"| {stage} | {_duration(s)} |" for stage, s in summary.stage_seconds.items()),
    ]
    lines += comparison_lines(summary.comparison)
    if plot_name:
        lines += ["", "## Per-slice quality scores", "", f"![per-slice scores]({plot_name})"]
    if summary.files:
        lines += ["", "## Files", ""]
        lines += [f"- `{name}`: {what}" for what, name in summary.files.items()]
    return "\n".join(lines) + "\n"


def comparison_lines(comparison: Comparison | None) -> list[str]:
    """The report's "Teacher vs propagation" section (none without a comparison)."""
    if comparison is None:
        return []
    lines = ["", "## Teacher vs propagation", "", comparison.summary()]
    if not comparison.fair:
        return lines
    lines += [
        "",
        f"| class | teacher IoU (held out) | {comparison.method} propagation IoU (held out) "
        "| pseudo-labels use |",
        "|---|---|---|---|",
        *(
            f"| {row['name']} | {_number(row['teacher_iou'])} | "
            f"{_number(row['propagation_iou'])} | {row['used']}: {row['reason']} |"
            for row in comparison.rows()
        ),
        f"| **mIoU** | **{_number(comparison.teacher_miou)}** | "
        f"**{_number(comparison.propagation_miou)}** | combination "
        f"{_number(comparison.combined_miou)} (chosen on these slices: flatters) |",
        "",
        "Each painted slice scored here was held out by some of the teacher's networks "
        f"(slices {'; '.join(_slice_list(s) for s in comparison.held_out)}) and predicted by "
        "them, and by propagation from the other painted slices. A held-out slice lies twice as "
        "far from its painted neighbours as the slices between them, which costs propagation "
        "more than the teacher: the propagation's true score on the unpainted slices is higher "
        '(docs/benchmarks.md, "Teacher against propagation").',
    ]
    if comparison.note:
        lines += ["", f"Note: {comparison.note}."]
    return lines


def write_report(
    path: str | os.PathLike[str], summary: RunSummary, plot_name: str | None = "scores.png"
) -> Path:
    """Write ``report.md`` (see :func:`render_report`) and return its path."""
    path = Path(path)
    path.write_text(render_report(summary, plot_name), encoding="utf-8")
    return path


def score_figure(
    scores: np.ndarray,
    tau: float,
    annotated: Sequence[int] = (),
    accepted: Sequence[int] = (),
    confidence: np.ndarray | None = None,
) -> Figure:
    """The figure :func:`plot_scores` saves, on an Agg canvas (drawn, ready to save).

    The legend sits to the right of the axes, outside them: inside, it hid the bars of the
    last slices, which are the ones a user looks for there.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.asarray(scores, dtype=np.float64)
    index = np.arange(values.size)
    accepted_mask = np.zeros(values.size, bool)
    accepted_mask[[i for i in accepted if 0 <= i < values.size]] = True
    annotated_mask = np.zeros(values.size, bool)
    annotated_mask[[i for i in annotated if 0 <= i < values.size]] = True
    finite = np.isfinite(values)
    figure = Figure(figsize=(10, 3.2), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    groups = [
        (finite & accepted_mask, "tab:green", "accepted"),
        (finite & ~accepted_mask & ~annotated_mask, "tab:gray", "rejected"),
        (finite & annotated_mask, "tab:blue", "annotated (ground truth)"),
    ]
    for mask, colour, label in groups:
        if mask.any():
            axes.bar(index[mask], values[mask], width=0.9, color=colour, label=label)
    if annotated_mask.any() and not (finite & annotated_mask).any():
        axes.plot(index[annotated_mask], np.zeros(annotated_mask.sum()), "^", color="tab:blue",
                  label="annotated (ground truth)")  # fmt: skip
    if confidence is not None:
        sure = np.asarray(confidence, dtype=np.float64)
        shown = np.isfinite(sure) & ~annotated_mask
        if shown.any():
            axes.plot(index[shown], sure[shown], ".", color="black", markersize=4,
                      label="teacher confidence")  # fmt: skip
    axes.axhline(tau, color="tab:red", linestyle="--", label=f"tau = {tau:g}")
    axes.set_xlim(-0.5, max(values.size, 1) - 0.5)
    axes.set_ylim(0.0, 1.05)
    axes.set_xlabel("slice index")
    axes.set_ylabel("predicted IoU of the pseudo-label")
    axes.set_title("Quality classifier scores per slice")
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)
    figure.tight_layout()  # makes room for the legend outside the axes
    canvas.draw()
    return figure


def plot_scores(
    path: str | os.PathLike[str],
    scores: np.ndarray,
    tau: float,
    annotated: Sequence[int] = (),
    accepted: Sequence[int] = (),
    confidence: np.ndarray | None = None,
) -> Path:
    """Save a PNG of the per-slice quality scores with the threshold ``tau`` drawn.

    Accepted slices are green, rejected ones grey, annotated slices (ground truth, not scored
    for selection) are marked along the bottom. NaN scores (slices not scored) are left out.
    The teacher's confidence per slice, when given, is drawn over the bars as dots; the legend
    sits outside the axes (see :func:`score_figure`).
    """
    path = Path(path)
    score_figure(scores, tau, annotated, accepted, confidence).savefig(path, format="png")
    return path
