"""``napari-distill quality-fit`` and ``quality-score`` on tiny TIFF files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

import napari_distill.cli.quality  # noqa: F401  (registers the commands)
from napari_distill.cli import main
from napari_distill.core.config import ModelConfig
from napari_distill.core.models import ModelBundle, build_model, save_checkpoint
from napari_distill.core.preprocess import Normalization
from napari_distill.core.quality import Selection

FAST = ["--steps", "3", "--variants", "1", "--input-size", "16", "--base-channels", "4"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An image, sparse labels and an (untrained) teacher checkpoint."""
    folder = tmp_path_factory.mktemp("cli_quality")
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (6, 32, 32)).astype(np.float32)
    labels = np.zeros((6, 32, 32), np.uint8)
    for i in (0, 2, 4):
        labels[i, 8:20, 8:20] = 1
        labels[i, 22:28, 4:12] = 2
        image[i][labels[i] == 1] += 100
        image[i][labels[i] == 2] += 50
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    tifffile.imwrite(folder / "small_labels.tif", labels[:, :16])
    config = ModelConfig(in_channels=1, num_classes=3, base_channels=4, depth=2)
    teacher = ModelBundle(
        model=build_model(config),
        model_config=config,
        class_ids=(0, 1, 2),
        class_names={0: "background"},
        normalization=Normalization((100.0,), (200.0,)),
    )
    save_checkpoint(folder / "teacher.pt", teacher)
    return folder


def _fit(files, out, *extra):
    return main(
        [
            "quality-fit",
            "--teacher", str(files / "teacher.pt"),
            "--image", str(files / "image.tif"),
            "--labels", str(files / "labels.tif"),
            "--out", str(out),
            "--device", "cpu",
            "--quiet",
            *FAST,
            *extra,
        ]
    )  # fmt: skip


def test_fit_then_score_round_trip(files, tmp_path, capsys, caplog):
    quality = tmp_path / "quality.pt"
    assert _fit(files, quality) == 0
    assert quality.is_file()
    assert "Spearman" in capsys.readouterr().out
    csv_path, json_path = tmp_path / "scores.csv", tmp_path / "scores.json"
    caplog.set_level(logging.INFO)
    code = main(
        [
            "quality-score",
            "--teacher", str(files / "teacher.pt"),
            "--quality", str(quality),
            "--image", str(files / "image.tif"),
            "--labels", str(files / "labels.tif"),
            "--out", str(csv_path),
            "--json", str(json_path),
            "--tau", "0.0",
            "--device", "cpu",
        ]
    )  # fmt: skip
    assert code == 0
    selection = Selection.load(csv_path, tau=0.0)
    assert sorted(selection.scores) == list(range(6))
    assert selection.annotated == {0, 2, 4}
    assert selection.accepted == {1, 3, 5}  # tau 0 takes every scored, unannotated slice
    assert sorted(selection.confidence) == list(range(6))  # the teacher's, beside the score
    unsure = ", ".join(str(i) for i in selection.worst_first("confidence")[:5])
    assert f"least sure of slices {unsure}" in caplog.text
    assert all(0.0 < c <= 1.0 for c in selection.confidence.values())
    from_json = Selection.load(json_path)
    assert from_json.tau == 0.0 and from_json.accepted == selection.accepted
    # Existing outputs are not replaced without --overwrite.
    assert _fit(files, quality) == 2
    assert "exists" in capsys.readouterr().err


def test_wrong_checkpoint_kinds_are_one_line_errors(files, tmp_path, capsys):
    quality = tmp_path / "quality.pt"
    assert _fit(files, quality) == 0
    capsys.readouterr()
    code = main(
        [
            "quality-fit",
            "--teacher", str(quality),
            "--image", str(files / "image.tif"),
            "--labels", str(files / "labels.tif"),
            "--out", str(tmp_path / "again.pt"),
            "--quiet",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"{quality} is a quality checkpoint, not a teacher" in err
    assert len(err.strip().splitlines()) == 1
    code = main(
        [
            "quality-score",
            "--teacher", str(files / "teacher.pt"),
            "--quality", str(files / "teacher.pt"),
            "--image", str(files / "image.tif"),
            "--out", str(tmp_path / "scores.csv"),
            "--quiet",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "teacher checkpoint, not a quality classifier" in err


def test_shape_mismatch_is_a_one_line_error(files, tmp_path, capsys):
    code = main(
        [
            "quality-fit",
            "--teacher", str(files / "teacher.pt"),
            "--image", str(files / "image.tif"),
            "--labels", str(files / "small_labels.tif"),
            "--out", str(tmp_path / "q.pt"),
            "--device", "cpu",
            "--quiet",
        ]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "do not match" in err and len(err.strip().splitlines()) == 1
    code = main(
        [
            "quality-score",
            "--teacher", str(files / "teacher.pt"),
            "--quality", str(files / "teacher.pt"),
            "--image", str(files / "image.tif"),
            "--out", str(tmp_path / "scores.csv"),
            "--tau", "2",
            "--quiet",
        ]
    )  # fmt: skip
    assert code == 2 and "--tau" in capsys.readouterr().err
