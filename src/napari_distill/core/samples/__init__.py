"""Seeded synthetic samples: a Medaka micro-CT volume and Pap smear fields.

Both come with sparse annotations (a few slices or fields, as a biologist would paint them)
and full ground truth, so that every part of napari-distill can be tried, tested and
benchmarked without downloading data. The same seed always gives the same sample.
"""

from __future__ import annotations

from .medaka import MEDAKA_CLASSES, MedakaSample, make_medaka, reslice_medaka
from .medaka_anatomy import REFERENCE_SHAPE
from .noise import NOISE_KINDS, corrupt_labels, noise_share
from .pap import PAP_CLASSES, PapSample, make_pap_smear
from .scribbles import DEFAULT_BACKGROUND_LABEL, simulate_points, simulate_scribbles

__all__ = [
    "DEFAULT_BACKGROUND_LABEL",
    "MEDAKA_CLASSES",
    "NOISE_KINDS",
    "PAP_CLASSES",
    "REFERENCE_SHAPE",
    "MedakaSample",
    "PapSample",
    "corrupt_labels",
    "make_medaka",
    "make_pap_smear",
    "noise_share",
    "reslice_medaka",
    "simulate_points",
    "simulate_scribbles",
]
