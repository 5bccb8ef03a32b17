"""``report.md``'s wording and the scores plot's layout (issue 30)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_distill.core.report import RunSummary, render_report, score_figure


def test_the_validation_row_reads_as_slice_indices_not_a_count():
    summary = RunSummary(
        n_slices=96, annotated=(37, 43, 54), validation=(54,), teacher_score=0.5,
        student_score=0.6, quality_spearman=math.nan, tau=0.7, accepted=(0,), strategy="kd",
    )  # fmt: skip
    text = render_report(summary)
    assert "| validation slice indices | 54 |" in text
    assert "| validation slices |" not in text  # "54" under that name read like a count


@pytest.mark.parametrize("n_slices", [6, 96])
def test_the_legend_hides_no_bar(n_slices):
    """The legend lies outside the axes, so it covers none of the bars (the last slices'
    ones were hidden under it when it sat in the lower right corner)."""
    scores = np.full(n_slices, 0.95)  # tall bars up to the last slice: the worst case
    scores[1] = np.nan
    figure = score_figure(
        scores, 0.7, annotated=(1,), accepted=tuple(range(2, n_slices)),
        confidence=np.full(n_slices, 0.9),
    )  # fmt: skip
    [axes] = figure.axes
    renderer = figure.canvas.get_renderer()
    legend = axes.get_legend().get_window_extent(renderer)
    area = axes.get_window_extent(renderer)
    assert not legend.overlaps(area), (legend, area)
    figure_box = figure.bbox
    assert figure_box.x0 <= legend.x0 and legend.x1 <= figure_box.x1  # and it is not cut off
    assert figure_box.y0 <= legend.y0 and legend.y1 <= figure_box.y1
