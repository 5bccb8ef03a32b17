"""Checkpoints written by an earlier version still load, and predict and score as they did then.

The files in ``tests/data/checkpoints_v0`` were written at commit 30f7dc5, before ``core/`` was
grouped into subpackages (their README says how). A checkpoint is a dict of tensors and plain
values, never a pickled class, so moving a module must not change what a saved file means.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.models import load_checkpoint
from napari_distill.core.quality import load_quality

DATA = Path(__file__).parents[1] / "data" / "checkpoints_v0"
MODELS = ["teacher", "teacher_views", "student_kd"]


@pytest.mark.parametrize("name", MODELS)
def test_an_old_checkpoint_predicts_what_it_predicted_then(tmp_path, name):
    bundle, _ = load_checkpoint(DATA / f"{name}.pt")
    assert bundle.class_ids == (0, 1, 2)
    labels, probabilities = tmp_path / "labels.tif", tmp_path / "probabilities.tif"
    code = main(
        [
            "predict", "--model", str(DATA / f"{name}.pt"), "--image", str(DATA / "image.tif"),
            "--out", str(labels), "--probabilities", str(probabilities), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    np.testing.assert_array_equal(
        tifffile.imread(labels), tifffile.imread(DATA / f"{name}_labels.tif")
    )
    np.testing.assert_allclose(
        tifffile.imread(probabilities).astype(np.float32),
        tifffile.imread(DATA / f"{name}_probabilities.tif").astype(np.float32),
        atol=2e-3,
    )


def test_an_old_quality_classifier_scores_what_it_scored_then(tmp_path):
    assert load_quality(DATA / "quality.pt").net.base_channels == 4
    sparse = np.zeros((6, 32, 32), np.uint8)
    truth = tifffile.imread(DATA / "teacher_labels.tif")
    sparse[[0, 2, 4]] = truth[[0, 2, 4]]  # the annotated slices are what the CSV marks
    tifffile.imwrite(tmp_path / "sparse.tif", sparse)
    out = tmp_path / "scores.csv"
    code = main(
        [
            "quality-score", "--teacher", str(DATA / "teacher.pt"),
            "--quality", str(DATA / "quality.pt"), "--image", str(DATA / "image.tif"),
            "--labels", str(tmp_path / "sparse.tif"), "--out", str(out), "--quiet",
        ]
    )  # fmt: skip
    assert code == 0
    then = list(csv.DictReader((DATA / "scores.csv").open()))
    now = list(csv.DictReader(out.open()))
    assert [row["slice"] for row in now] == [row["slice"] for row in then]
    for old, new in zip(then, now, strict=True):
        assert float(new["score"]) == pytest.approx(float(old["score"]), abs=1e-4)
        assert float(new["confidence"]) == pytest.approx(float(old["confidence"]), abs=1e-4)
