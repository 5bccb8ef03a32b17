"""``napari-distill run --images ... --labels-dir ...`` and ``run --project FILE``: three tiny
volumes, one painted; outputs per image, scores with an image column, refusals by name."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

import napari_distill.cli.distill  # noqa: F401  (registers run)
from napari_distill.cli import main
from napari_distill.core.models import load_checkpoint
from synthetic import fixed_disk_square_volume

FAST = ["--steps", "2", "--device", "cpu", "--quiet", "--no-plan"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "scans").mkdir()
    (root / "painted").mkdir()
    for k in range(3):
        image, truth = fixed_disk_square_volume(seed=k)
        tifffile.imwrite(root / "scans" / f"fish{k}.tif", image)
        if k == 1:
            labels = np.zeros_like(truth)
            labels[[1, 3, 5, 6]] = truth[[1, 3, 5, 6]]
            tifffile.imwrite(root / "painted" / "fish1_labels.tif", labels)
    return root


@pytest.fixture(scope="module")
def run_dir(folders):
    out = folders / "out"
    code = main([
        "run", "--images", str(folders / "scans" / "*.tif"),
        "--labels-dir", str(folders / "painted"), "--out-dir", str(out), "--tau", "0", *FAST,
    ])  # fmt: skip
    assert code == 0
    return out


def test_run_images_writes_labels_per_image_and_scores_with_the_image(run_dir):
    for k in range(3):
        for suffix in ("_teacher_labels.tif", "_labels.tif"):
            assert tifffile.imread(run_dir / f"fish{k}{suffix}").shape == (8, 32, 32)
    with (run_dir / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["image"] for r in rows} == {"fish0", "fish1", "fish2"}
    assert {r["image"] for r in rows if r["annotated"] == "1"} == {"fish1"}
    assert {r["image"] for r in rows if r["accepted"] == "1"} == {"fish0", "fish1", "fish2"}
    report = (run_dir / "report.md").read_text()
    assert "| fish0 | 8 | 0 | 8 |" in report and "| fish1 | 8 | 4 | 4 |" in report
    settings = json.loads((run_dir / "project.json").read_text())["settings"]
    assert settings["steps"] == 2 and settings["tau"] == 0
    assert settings["noisy_student"] is False and settings["larger_student"] is False


def test_run_project_repeats_a_run_and_a_local_cluster_predicts_the_same(run_dir, tmp_path):
    """The run repeated from its project.json, its predictions on a local Dask cluster of one
    worker (one task per image): the same label files as the first run's, made in process."""
    out = tmp_path / "again"
    assert main(["run", "--project", str(run_dir / "project.json"), "--out-dir", str(out),
                 "--device", "cpu", "--quiet", "--workers", "1"]) == 0  # fmt: skip
    student = (out / "report.md").read_text()
    assert "learnt from 20 pseudo-labelled" in student  # tau 0 and the steps, from the file
    for k in range(3):
        for suffix in ("_teacher_labels.tif", "_labels.tif"):
            np.testing.assert_array_equal(
                tifffile.imread(out / f"fish{k}{suffix}"),
                tifffile.imread(run_dir / f"fish{k}{suffix}"),
            )
    assert (out / "scores.csv").read_text() == (run_dir / "scores.csv").read_text()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in run_dir.iterdir())


@pytest.fixture
def unanswered(monkeypatch):
    """Dask gives up on a scheduler after 1 s instead of 30 (its connect timeout setting)."""
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        yield "tcp://127.0.0.1:9"  # the discard port: nothing listens there


def test_a_scheduler_that_does_not_answer_stops_the_run_before_it_writes(
    folders, tmp_path, capsys, unanswered
):
    out = tmp_path / "out"
    code = main([
        "run", "--images", str(folders / "scans"), "--labels-dir", str(folders / "painted"),
        "--out-dir", str(out), "--scheduler", unanswered, *FAST,
    ])  # fmt: skip
    assert code == 2
    assert f"--scheduler: no Dask scheduler answers at {unanswered}" in capsys.readouterr().err
    assert not out.exists()


def test_the_project_file_says_where_to_predict_and_flags_override_it(
    folders, tmp_path, capsys, unanswered
):
    project = tmp_path / "p.toml"
    scans, painted = (folders / "scans").as_posix(), (folders / "painted").as_posix()
    text = f'images = "{scans}"\nlabels_dir = "{painted}"\n[settings]\nsteps = 2\n'
    project.write_text(text + f'scheduler = "{unanswered}"\n')
    argv = ["run", "--project", str(project), "--out-dir", str(tmp_path / "o"), *FAST]
    assert main(argv) == 2
    assert f"no Dask scheduler answers at {unanswered}" in capsys.readouterr().err
    assert main([*argv, "--scheduler", "tcp://127.0.0.1"]) == 2  # the flag wins
    assert "'tcp://127.0.0.1' is not an address" in capsys.readouterr().err
    project.write_text(text + "workers = 0\n")
    assert main(argv) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_the_project_file_sets_the_students_recipe(folders, tmp_path):
    project = tmp_path / "p.toml"
    scans, painted = (folders / "scans").as_posix(), (folders / "painted").as_posix()
    project.write_text(
        f'images = "{scans}"\nlabels_dir = "{painted}"\n[settings]\nsteps = 2\ntau = 0\n'
        "noisy_student = true\nlarger_student = true\n"
    )
    out = tmp_path / "o"
    assert main(["run", "--project", str(project), "--out-dir", str(out), *FAST]) == 0
    student, _ = load_checkpoint(out / "student.pt", kind="student")
    assert student.extra["strategy_config"]["noisy_student"] is True
    assert student.extra["strategy_config"]["larger_student"] is True
    assert student.extra["from_teacher"] is False


def test_one_image_runs_refuse_cluster_options(folders, tmp_path, capsys):
    image = folders / "scans" / "fish1.tif"
    argv = ["run", "--image", str(image), "--labels", str(folders / "painted" / "fish1_labels.tif")]
    assert main([*argv, "--out-dir", str(tmp_path / "o"), "--workers", "2", *FAST]) == 2
    assert "--scheduler and --workers go with --images or --project" in capsys.readouterr().err


def test_a_labels_file_of_another_shape_is_refused_by_name(folders, tmp_path, capsys):
    painted = tmp_path / "painted"
    painted.mkdir()
    tifffile.imwrite(painted / "fish2.tif", np.ones((8, 32, 31), np.uint8))
    code = main([
        "run", "--images", str(folders / "scans"), "--labels-dir", str(painted),
        "--out-dir", str(tmp_path / "out"), *FAST,
    ])  # fmt: skip
    assert code == 2
    error = capsys.readouterr().err
    assert "fish2.tif have shape (8, 32, 31)" in error and "(8, 32, 32)" in error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_images_without_any_labels_are_refused(folders, tmp_path, capsys):
    code = main(
        ["run", "--images", str(folders / "scans"), "--out-dir", str(tmp_path / "o"), *FAST]
    )
    assert code == 2 and "no image of the project has labels" in capsys.readouterr().err


def test_views_asked_for_several_images_are_refused_saying_why(folders, tmp_path, capsys):
    code = main([
        "run", "--images", str(folders / "scans"), "--labels-dir", str(folders / "painted"),
        "--out-dir", str(tmp_path / "out"), "--views", *FAST,
    ])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and "--views is for one image (--image)" in error
    assert "one volume run into the next" in error and not (tmp_path / "out").exists()
