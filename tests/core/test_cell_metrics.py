"""Overlap-aware cell scores on hand-made overlapping cells."""

from __future__ import annotations

import numpy as np
import pytest

from napari_distill.core.evaluation.cells import score_cells, score_nuclei
from napari_distill.core.io.cells import pack_planes, stack_planes


def _disk(centre, radius, shape=(50, 50)):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


A, B, C = _disk((20, 18), 9), _disk((20, 30), 9), _disk((40, 40), 5)


def test_a_perfect_prediction_scores_one_even_in_other_planes():
    truth = pack_planes([A, B, C])
    pred = pack_planes([C, B, A], ids=[7, 3, 9])  # other ids, other plane order
    s = score_cells(pred, truth)
    assert s.aji == pytest.approx(1.0)
    assert s.dice == pytest.approx(1.0)
    assert s.f1 == pytest.approx(1.0)
    assert (s.missed, s.spurious, s.matched) == (0, 0, 3)


def test_overlap_counts_for_both_cells():
    """The shared pixels belong to A and to B: a flat labelling that gives them to one cell
    scores below 1 because B is compared whole."""
    truth = pack_planes([A, B])
    flat = np.zeros(A.shape, np.uint8)
    flat[A] = 1
    flat[B & ~A] = 2
    s = score_cells(flat[None], truth)
    assert s.aji < 1.0
    assert s.dice < 1.0


def test_a_cell_merged_into_its_neighbour_scores_less():
    truth = pack_planes([A, B, C])
    merged = pack_planes([A | B, C])
    s = score_cells(merged, truth)
    assert s.aji < 0.8
    assert s.missed >= 1
    assert s.f1 < 1.0


def test_missed_and_spurious_cells_are_counted():
    truth = pack_planes([A, B])
    pred = pack_planes([A, C])
    s = score_cells(pred, truth)
    assert (s.matched, s.missed, s.spurious) == (1, 1, 1)
    assert s.f1 == pytest.approx(0.5)


def test_fields_are_aggregated_and_selectable():
    truth = stack_planes([pack_planes([A, B]), pack_planes([A, B])])
    pred = stack_planes([pack_planes([A, B]), pack_planes([A | B])])
    assert score_cells(pred, truth, fields=[0]).aji == pytest.approx(1.0)
    assert score_cells(pred, truth).aji < 1.0


def test_nuclei_scores_on_plain_instances():
    truth = np.zeros((50, 50), np.uint8)
    truth[C] = 1
    assert score_nuclei(truth, truth).aji == pytest.approx(1.0)
    assert np.isnan(score_nuclei(np.zeros_like(truth), np.zeros_like(truth)).aji)
    assert score_nuclei(np.zeros_like(truth), truth).missed == 1
