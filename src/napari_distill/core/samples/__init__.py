"""Seeded synthetic samples: a Medaka micro-CT volume and Pap smear fields.

Both come with sparse annotations (a few slices or fields, as a biologist would paint them)
and full ground truth, so that every part of napari-distill can be tried, tested and
benchmarked without downloading data. The same seed always gives the same sample.
"""

from __future__ import annotations

from .medaka import MEDAKA_CLASSES, MedakaSample, make_medaka
from .medaka_anatomy import REFERENCE_SHAPE
from .pap import PAP_CLASSES, PapSample, make_pap_smear

__all__ = [
    "MEDAKA_CLASSES",
    "PAP_CLASSES",
    "REFERENCE_SHAPE",
    "MedakaSample",
    "PapSample",
    "make_medaka",
    "make_pap_smear",
]
