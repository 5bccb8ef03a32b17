"""Every output a command writes is checked before any work (issue 30).

A folder that cannot take the file (a path under a regular file, a missing folder, a folder
refusing new files) or an existing file without ``--overwrite`` ends the command at once, in
one line: no training step, no prediction. The compute functions are replaced by ones that
fail the test if they are ever reached.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

import napari_distill.core.inference
import napari_distill.core.pipeline
import napari_distill.core.quality
from napari_distill.cli import main
from napari_distill.core.config import ModelConfig
from napari_distill.core.io import write as io_write
from napari_distill.core.models import ModelBundle, build_model, save_checkpoint
from napari_distill.core.preprocess import Normalization
from napari_distill.core.training import TrainingRun


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """image.tif, labels.tif, an untrained teacher.pt and a quality.pt (3 steps)."""
    folder = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(0)
    image = rng.normal(100, 10, (6, 32, 32)).astype(np.float32)
    labels = np.zeros((6, 32, 32), np.uint8)
    for i in (0, 2, 4):
        labels[i, 8:20, 8:20] = 1
        labels[i, 22:28, 4:12] = 2
        image[i][labels[i] > 0] += 80
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    config = ModelConfig(in_channels=1, num_classes=3, base_channels=4, depth=2)
    teacher = ModelBundle(
        model=build_model(config), model_config=config, class_ids=(0, 1, 2),
        class_names={0: "background"}, normalization=Normalization((100.0,), (200.0,)),
    )  # fmt: skip
    save_checkpoint(folder / "teacher.pt", teacher)
    fit = ["quality-fit", "--teacher", str(folder / "teacher.pt"), "--image"]
    fit += [str(folder / "image.tif"), "--labels", str(folder / "labels.tif")]
    fit += ["--out", str(folder / "quality.pt"), "--steps", "3", "--variants", "1"]
    assert main([*fit, "--input-size", "16", "--base-channels", "4", "--quiet"]) == 0
    return folder


def commands(d: Path, target: str) -> dict[str, list[str]]:
    """Each command with ``target`` as one of its outputs (the others in ``d``)."""
    image, labels = ["--image", str(d / "image.tif")], ["--labels", str(d / "labels.tif")]
    teacher = ["--teacher", str(d / "teacher.pt")]
    # An output that is fine: never written, since every command here is refused first (and
    # building the list touches no disk: COMMANDS below is made at import, in the cwd).
    fresh = str(d / "fresh")
    predict = ["predict", "--model", str(d / "teacher.pt"), *image]
    score = ["quality-score", *teacher, "--quality", str(d / "quality.pt"), *image]
    return {
        "train-teacher": ["train-teacher", *image, *labels, "--out", target, "--steps", "2"],
        "distill": ["distill", *teacher, *image, *labels, "--out", target, "--steps", "2"],
        "run": ["run", *image, *labels, "--out-dir", target, "--steps", "2"],
        "predict --out": [*predict, "--out", target + ".tif"],
        "predict --probabilities": [
            *predict, "--out", fresh + ".tif", "--probabilities", target + ".tif",
        ],
        "predict --instances": [*predict, "--out", fresh + ".tif", "--instances", target + ".tif"],
        "quality-fit": ["quality-fit", *teacher, *image, *labels, "--out", target],
        "quality-score --out": [*score, "--out", target],
        "quality-score --json": [*score, "--out", fresh + ".csv", "--json", target],
    }  # fmt: skip


COMMANDS = list(commands(Path("."), "x"))


@pytest.fixture
def no_work(monkeypatch):
    """Training, prediction, the quality classifier and the pipeline fail the test if run."""

    def reached(*args, **kwargs):
        pytest.fail("work started before the outputs were checked")

    monkeypatch.setattr(TrainingRun, "steps", reached)
    monkeypatch.setattr(napari_distill.core.inference, "predict_bundle", reached)
    monkeypatch.setattr(napari_distill.core.quality, "fit_quality", reached)
    monkeypatch.setattr(napari_distill.core.quality, "score_slices", reached)
    monkeypatch.setattr(napari_distill.core.pipeline, "run_pipeline", reached)


def refused(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main([*argv, "--quiet", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    return line


@pytest.mark.parametrize("name", COMMANDS)
def test_a_path_under_a_file_is_refused_before_any_work(inputs, tmp_path, capsys, no_work, name):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    line = refused(commands(inputs, str(tmp_path / "notes.txt" / "out"))[name], capsys)
    assert "notes.txt is a file, not a folder" in line


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "run"])  # run makes its folder
def test_a_missing_folder_is_refused_before_any_work(inputs, tmp_path, capsys, no_work, name):
    line = refused(commands(inputs, str(tmp_path / "missing" / "out"))[name], capsys)
    assert "missing" in line and "does not exist" in line


@pytest.mark.parametrize("name", COMMANDS)
def test_a_folder_refusing_new_files_is_refused_before_any_work(
    inputs, tmp_path, capsys, monkeypatch, no_work, name
):
    """A read-only folder, as the writability probe meets it (root may write anywhere, so
    chmod cannot make one in a test run as root: see the test below for the real thing)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    argv = commands(inputs, str(locked / "out"))[name]
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):  # noqa: A002 - tempfile's own name
        if dir is not None and locked.resolve() in (
            Path(dir).resolve(),
            *Path(dir).resolve().parents,
        ):
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(io_write.tempfile, "mkstemp", mkstemp)
    line = refused(argv, capsys)
    assert f"cannot write into the folder {locked}" in line and "(Permission denied)" in line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_folder_is_refused(inputs, tmp_path, capsys, no_work):
    locked = tmp_path / "read_only"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = refused(commands(inputs, str(locked / "out"))["train-teacher"], capsys)
    finally:
        locked.chmod(0o755)
    assert "cannot write into the folder" in line


@pytest.mark.parametrize("name", [n for n in COMMANDS if n != "run"])
def test_an_existing_file_is_refused_before_any_work(inputs, tmp_path, capsys, no_work, name):
    argv = commands(inputs, str(tmp_path / "taken"))[name]
    for suffix in ("", ".tif"):
        (tmp_path / f"taken{suffix}").write_text("an earlier result")
    line = refused(argv, capsys)
    assert "taken" in line and "already exists" in line and "--overwrite" in line


def test_predict_refuses_a_non_tiff_or_twice_named_output_before_predicting(
    inputs, tmp_path, capsys, no_work
):
    predict = ["predict", "--model", str(inputs / "teacher.pt")]
    predict += ["--image", str(inputs / "image.tif")]
    line = refused([*predict, "--out", str(tmp_path / "labels.png")], capsys)
    assert "labels.png: napari-distill writes .tif / .tiff files" in line
    same = str(tmp_path / "labels.tif")
    line = refused([*predict, "--out", same, "--instances", same], capsys)
    assert "--out and --instances name the same file" in line
