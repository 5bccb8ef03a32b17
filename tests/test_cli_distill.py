"""``napari-distill run`` and ``napari-distill distill`` on a tiny volume (CPU, few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_distill.cli.distill  # noqa: F401  (registers run and distill)
from napari_distill.cli import main
from napari_distill.core.models import load_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:32, :32]
    truth = np.zeros((6, 32, 32), np.uint8)
    for i in range(6):
        truth[i][(rows - 12 - i) ** 2 + (cols - 14) ** 2 < 40] = 1
    image = (rng.normal(100, 5, truth.shape) + 80 * truth).astype(np.uint16)
    labels = np.zeros_like(truth)
    labels[[1, 2, 4]] = truth[[1, 2, 4]]
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    return folder


@pytest.fixture(scope="module")
def run_dir(files):
    out = files / "run"
    code = main([
        "run", "--image", str(files / "image.tif"), "--labels", str(files / "labels.tif"),
        "--out-dir", str(out), "--steps", "2", "--device", "cpu", "--quiet",
    ])  # fmt: skip
    assert code == 0
    return out


def test_run_arguments_reach_the_pipeline_config(tmp_path):
    from napari_distill.cli import build_parser
    from napari_distill.cli.distill import pipeline_config

    argv = ["run", "--sample", "medaka", "--out-dir", str(tmp_path), "--seed", "3"]
    default = pipeline_config(build_parser().parse_args(argv))
    assert not default.predict.mirror and default.teacher.seed == 3
    assert default.teacher.steps is None  # the automatic budget
    assert default.model.members == 1 and default.model.downsample == 1
    tuned = pipeline_config(
        build_parser().parse_args(
            [*argv, "--mirror", "--tau", "0.5", "--teachers", "3", "--downsample", "2"]
        )
    )
    assert tuned.predict.mirror and tuned.quality.tau == 0.5
    assert tuned.model.members == 3 and tuned.model.downsample == 2
    assert not default.model.views and not tuned.model.views
    views = pipeline_config(build_parser().parse_args([*argv, "--views"]))
    assert views.model.views and views.model.members == 3
    assert not default.cleanup.keep_largest_component and default.cleanup.min_size == 0
    cleaned = pipeline_config(
        build_parser().parse_args([*argv, "--largest-component", "4,5", "--min-size", "20"])
    )
    assert cleaned.cleanup.keep_largest_component and cleaned.cleanup.min_size == 20
    assert cleaned.cleanup.largest_component_classes == (4, 5)


def test_run_writes_labels_scores_and_report(run_dir):
    for name in ("teacher_labels.tif", "student_labels.tif", "scores.csv", "report.md"):
        assert (run_dir / name).is_file(), name
    assert tifffile.imread(run_dir / "student_labels.tif").shape == (6, 32, 32)


def test_run_refuses_to_overwrite(files, run_dir, capsys):
    code = main([
        "run", "--image", str(files / "image.tif"), "--labels", str(files / "labels.tif"),
        "--out-dir", str(run_dir), "--steps", "2", "--device", "cpu", "--quiet",
    ])  # fmt: skip
    assert code == 2 and "--overwrite" in capsys.readouterr().err


def test_run_refuses_a_cleanup_of_a_class_never_painted(files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "run", "--image", str(files / "image.tif"), "--labels", str(files / "labels.tif"),
        "--out-dir", str(out), "--steps", "2", "--device", "cpu", "--quiet",
        "--largest-component", "1,3",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "the clean-up names class 3, which no painted slice has (classes painted: 1)" in err
    assert not (out / "teacher.pt").exists()  # refused before the slow part


def test_distill_from_the_run_teacher_and_scores(files, run_dir, tmp_path):
    out = tmp_path / "student.pt"
    code = main([
        "distill", "--teacher", str(run_dir / "teacher.pt"), "--image", str(files / "image.tif"),
        "--labels", str(files / "labels.tif"), "--scores", str(run_dir / "scores.csv"),
        "--tau", "0", "--lambda-kd", "0.5", "--smaller-student", "--kd-on-annotated",
        "--annotated-share", "0.25", "--steps", "2", "--device", "cpu", "--quiet",
        "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    bundle, _ = load_checkpoint(out, kind="student")
    assert bundle.extra["strategy_config"]["lambda_kd"] == 0.5
    assert bundle.extra["strategy_config"]["kd_on_annotated"] is True
    assert bundle.extra["strategy_config"]["annotated_share"] == 0.25
    assert bundle.extra["accepted_slices"] == [0, 3, 5]  # tau = 0 accepts every scored slice
    assert bundle.extra["from_teacher"] is False


def test_distill_a_larger_noisy_student(files, run_dir, tmp_path):
    out = tmp_path / "student.pt"
    code = main([
        "distill", "--teacher", str(run_dir / "teacher.pt"), "--image", str(files / "image.tif"),
        "--labels", str(files / "labels.tif"), "--larger-student", "--noisy-student",
        "--steps", "2", "--device", "cpu", "--quiet", "--out", str(out),
    ])  # fmt: skip
    assert code == 0
    bundle, _ = load_checkpoint(out, kind="student")
    teacher, _ = load_checkpoint(run_dir / "teacher.pt")
    assert bundle.extra["strategy_config"]["larger_student"] is True
    assert bundle.extra["strategy_config"]["noisy_student"] is True
    assert bundle.model_config.base_channels == 2 * teacher.model_config.base_channels
    assert bundle.extra["from_teacher"] is False


def test_distill_mistakes_are_one_line_errors(files, run_dir, tmp_path, capsys):
    common = [
        "distill", "--teacher", str(run_dir / "teacher.pt"), "--image", str(files / "image.tif"),
        "--labels", str(files / "labels.tif"), "--device", "cpu", "--quiet",
        "--out", str(tmp_path / "s.pt"),
    ]  # fmt: skip
    assert main([*common, "--tau", "0.5"]) == 2
    assert "--tau needs --scores" in capsys.readouterr().err
    assert main([*common, "--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main([*common, "--annotated-share", "2"]) == 2
    assert "annotated_share" in capsys.readouterr().err
    assert main([*common, "--smaller-student", "--larger-student"]) == 2
    assert "both smaller and larger" in capsys.readouterr().err
    assert main([*common, "--scores", str(tmp_path / "missing.csv")]) == 2
