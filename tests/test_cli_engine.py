"""The engine commands of ``napari-distill`` end to end on tiny TIFFs made in the test.

``train-teacher``, ``predict``, ``evaluate`` and ``sample`` through :func:`napari_distill.cli.main`,
and the ways a user can get them wrong: each ends with exit code 2 and one line on stderr,
never a traceback. Ctrl-C (exit 130) keeps the best model so far, and ``--resume`` continues it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
import torch
from scipy import ndimage

from napari_distill.cli import main
from napari_distill.core.config import TrainConfig
from napari_distill.core.evaluation import clean_semantic
from napari_distill.core.models import load_checkpoint
from napari_distill.core.models.networks import ModelEnsemble
from napari_distill.core.training import TrainingRun
from synthetic import disk_square_volume

TRAIN_FLAGS = ["--steps", "20", "--base-channels", "8", "--depth", "3", "--patch-size", "32"]
TRAIN_FLAGS += ["--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """image.tif, truth.tif (every slice) and sparse.tif (slices 0, 3, 6 painted)."""
    folder = tmp_path_factory.mktemp("cli")
    image, truth = disk_square_volume(noise=8.0)
    image = np.clip(image, 0, 65535).astype(np.uint16)
    sparse = np.zeros_like(truth)
    sparse[[0, 3, 6]] = truth[[0, 3, 6]]
    paths = {"image": folder / "image.tif", "truth": folder / "truth.tif"}
    paths["sparse"] = folder / "sparse.tif"
    tifffile.imwrite(paths["image"], image)
    tifffile.imwrite(paths["truth"], truth)
    tifffile.imwrite(paths["sparse"], sparse)
    return paths


@pytest.fixture(scope="module")
def teacher(files):
    """A teacher checkpoint trained once for the module by the command line."""
    out = files["image"].parent / "teacher.pt"
    code = main(
        ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
        + ["--out", str(out), "--class-names", "1=disk,2=square", "--keep", "best"]
        + ["--no-deep-supervision", *TRAIN_FLAGS]
    )
    assert code == 0
    return out


def run_failing(argv: list[str], capsys) -> str:
    """Run ``argv``, expect exit code 2 and return the one-line error message."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("napari-distill ")
    return lines[0]


# ------------------------------------------------------------------------- the happy path
def test_train_teacher_writes_a_teacher_checkpoint(teacher):
    bundle, checkpoint = load_checkpoint(teacher, kind="teacher")
    assert bundle.class_ids == (0, 1, 2)
    assert bundle.class_names == {0: "background", 1: "disk", 2: "square"}
    assert bundle.model_config.base_channels == 8 and bundle.model_config.depth == 3
    assert checkpoint["step"] == 20
    assert bundle.train_config.keep_final is False  # --keep best
    assert bundle.model_config.deep_supervision is False  # --no-deep-supervision


def test_predict_writes_labels_probabilities_and_instances(files, teacher, tmp_path):
    out, probabilities, instances = (tmp_path / name for name in ("l.tif", "p.tif", "i.tif"))
    code = main(
        ["predict", "--model", str(teacher), "--image", str(files["image"]), "--out", str(out)]
        + ["--probabilities", str(probabilities), "--instances", str(instances)]
        + ["--instance-classes", "1", "--device", "cpu", "--quiet"]
    )
    assert code == 0
    labels = tifffile.imread(out)
    assert labels.shape == (8, 48, 48) and set(np.unique(labels).tolist()) <= {0, 1, 2}
    probs = tifffile.imread(probabilities)
    assert probs.shape == (3, 8, 48, 48)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-3)
    split = tifffile.imread(instances)
    assert split.shape == labels.shape
    assert np.array_equal(split > 0, labels == 1)  # only class 1 is split into instances

    mirrored = tmp_path / "m.tif"
    code = main(
        ["predict", "--model", str(teacher), "--image", str(files["image"]), "--out", str(out)]
        + ["--probabilities", str(mirrored), "--mirror", "--overwrite", "--quiet"]
    )
    assert code == 0
    mirrored_probs = tifffile.imread(mirrored)
    np.testing.assert_allclose(mirrored_probs.sum(axis=0), 1.0, atol=1e-3)
    assert not np.allclose(mirrored_probs, probs, atol=1e-3)  # the mirror images count


def test_predict_cleans_the_labels_it_writes(files, teacher, tmp_path, capsys):
    """--largest-component IDS and --min-size clean --out (and --instances) as
    ``clean_semantic`` does; a class the model does not have is refused before predicting."""
    predict = ["predict", "--model", str(teacher), "--image", str(files["image"]), "--quiet"]
    plain, cleaned = tmp_path / "plain.tif", tmp_path / "clean.tif"
    assert main([*predict, "--out", str(plain)]) == 0
    argv = [*predict, "--out", str(cleaned), "--instances", str(tmp_path / "inst.tif")]
    assert main([*argv, "--largest-component", "2", "--min-size", "5"]) == 0
    before = tifffile.imread(plain)
    assert ndimage.label(before == 2)[1] > 1  # this short-trained teacher's squares are in pieces
    expected = clean_semantic(before, True, 5, (2,))
    assert np.array_equal(tifffile.imread(cleaned), expected)
    assert np.array_equal(tifffile.imread(tmp_path / "inst.tif"), expected)
    assert ndimage.label(expected == 2)[1] == 1

    refused = tmp_path / "refused.tif"
    message = run_failing([*predict, "--out", str(refused), "--largest-component", "1,7"], capsys)
    assert "--largest-component: class 7 is not one of the model's classes" in message
    assert "1 disk, 2 square" in message and not refused.exists()
    message = run_failing([*predict, "--out", str(refused), "--min-size", "-1"], capsys)
    assert "--min-size must be >= 0" in message


def test_teachers_trains_an_ensemble_that_predicts(files, tmp_path, capsys):
    out = tmp_path / "ensemble.pt"
    train = ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
    code = main([*train, "--out", str(out), "--teachers", "2", *TRAIN_FLAGS])
    assert code == 0
    bundle, _ = load_checkpoint(out, kind="teacher")
    assert bundle.model_config.members == 2 and isinstance(bundle.model, ModelEnsemble)
    labels = tmp_path / "labels.tif"
    predict = ["predict", "--model", str(out), "--image", str(files["image"])]
    assert main([*predict, "--out", str(labels), "--quiet"]) == 0
    assert tifffile.imread(labels).shape == (8, 48, 48)
    message = run_failing(
        [*train, "--out", str(tmp_path / "nine.pt"), "--teachers", "9", *TRAIN_FLAGS], capsys
    )
    assert "teachers in an ensemble) must be between 1 and 8, got 9" in message


def test_views_train_three_teachers_along_the_volume_axes(files, tmp_path, capsys):
    out = tmp_path / "views.pt"
    train = ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
    assert main([*train, "--out", str(out), "--views", *TRAIN_FLAGS]) == 0
    bundle, _ = load_checkpoint(out, kind="teacher")
    assert bundle.model_config.views and bundle.model_config.members == 3  # the default
    labels = tmp_path / "labels.tif"
    predict = ["predict", "--model", str(out), "--image", str(files["image"]), "--quiet"]
    assert main([*predict, "--out", str(labels)]) == 0
    assert tifffile.imread(labels).shape == (8, 48, 48)
    message = run_failing(
        [*train, "--out", str(tmp_path / "two.pt"), "--views", "--teachers", "2", *TRAIN_FLAGS],
        capsys,
    )
    assert "need at least 3 members, got 2" in message and not (tmp_path / "two.pt").exists()


def test_downsample_trains_a_teacher_that_works_at_half_scale(files, tmp_path, capsys):
    out = tmp_path / "half.pt"
    train = ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
    assert main([*train, "--out", str(out), "--downsample", "2", *TRAIN_FLAGS]) == 0
    bundle, _ = load_checkpoint(out, kind="teacher")
    assert bundle.model_config.downsample == 2
    labels = tmp_path / "labels.tif"
    predict = ["predict", "--model", str(out), "--image", str(files["image"])]
    assert main([*predict, "--out", str(labels), "--quiet"]) == 0
    assert tifffile.imread(labels).shape == (8, 48, 48)  # the image's pixels, not the network's
    message = run_failing(
        [*train, "--out", str(tmp_path / "nine.pt"), "--downsample", "9", *TRAIN_FLAGS], capsys
    )
    assert "downsample (the network's working scale) must be a whole factor" in message
    assert not (tmp_path / "nine.pt").exists()


def test_evaluate_prints_and_writes_scores(files, tmp_path, capsys):
    truth = tifffile.imread(files["truth"])
    prediction = truth.copy()
    prediction[1][prediction[1] == 2] = 0  # slice 1 misses its square
    pred_path = tmp_path / "pred.tif"
    tifffile.imwrite(pred_path, prediction)
    report = tmp_path / "scores.json"
    capsys.readouterr()
    argv = ["evaluate", "--prediction", str(pred_path), "--truth", str(files["truth"])]
    assert main([*argv, "--json", str(report), "--quiet"]) == 0
    assert "mean" in capsys.readouterr().out
    scores = json.loads(report.read_text())
    assert scores["dice"]["1"] == pytest.approx(1.0) and scores["dice"]["2"] < 1.0
    # Only the slices the mistake is not on: a perfect score.
    only = tmp_path / "only.json"
    assert main([*argv, "--slices", "2-4,6", "--json", str(only), "--quiet"]) == 0
    assert json.loads(only.read_text())["mean_iou"] == pytest.approx(1.0)
    # Instance scores of a prediction against itself.
    instances = tmp_path / "instances.json"
    same = ["evaluate", "--prediction", str(files["truth"]), "--truth", str(files["truth"])]
    assert main([*same, "--instances", "--json", str(instances), "--quiet"]) == 0
    assert json.loads(instances.read_text()) == {"aji": 1.0, "f1_iou50": 1.0}


def test_sample_medaka_writes_its_files(tmp_path):
    assert main(["sample", "medaka", "--out-dir", str(tmp_path), "--quiet"]) == 0
    names = ("image", "labels_sparse", "labels_full")
    shapes = {tifffile.imread(tmp_path / f"medaka_{name}.tif").shape for name in names}
    assert len(shapes) == 1 and len(shapes.pop()) == 3


# ------------------------------------------------------------------------- user mistakes
def test_missing_input_file(files, tmp_path, capsys):
    message = run_failing(
        ["train-teacher", "--image", str(tmp_path / "nowhere.tif"), "--labels"]
        + [str(files["sparse"]), "--out", str(tmp_path / "t.pt"), *TRAIN_FLAGS],
        capsys,
    )
    assert "nowhere.tif" in message


def test_existing_output_needs_overwrite(files, teacher, capsys):
    message = run_failing(
        ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
        + ["--out", str(teacher), *TRAIN_FLAGS],
        capsys,
    )
    assert "--overwrite" in message
    out = files["image"].parent / "exists.tif"
    out.write_bytes(b"")
    run_failing(
        ["predict", "--model", str(teacher), "--image", str(files["image"]), "--out", str(out)],
        capsys,
    )


def test_wrong_checkpoint(files, tmp_path, capsys):
    weights = tmp_path / "weights.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, weights)
    message = run_failing(
        ["predict", "--model", str(weights), "--image", str(files["image"])]
        + ["--out", str(tmp_path / "l.tif"), "--device", "cpu"],
        capsys,
    )
    assert "weights.pt" in message
    not_torch = tmp_path / "notes.pt"
    not_torch.write_text("not a checkpoint")
    run_failing(
        ["predict", "--model", str(not_torch), "--image", str(files["image"])]
        + ["--out", str(tmp_path / "l.tif"), "--device", "cpu"],
        capsys,
    )


def test_shape_mismatch(files, tmp_path, capsys):
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, tifffile.imread(files["sparse"])[:, :40])
    message = run_failing(
        ["train-teacher", "--image", str(files["image"]), "--labels", str(small)]
        + ["--out", str(tmp_path / "t.pt"), *TRAIN_FLAGS],
        capsys,
    )
    assert "do not match" in message
    message = run_failing(
        ["evaluate", "--prediction", str(small), "--truth", str(files["truth"])], capsys
    )
    assert "shape" in message


def test_labels_with_nothing_painted(files, tmp_path, capsys):
    empty = tmp_path / "empty.tif"
    tifffile.imwrite(empty, np.zeros((8, 48, 48), np.uint8))
    message = run_failing(
        ["train-teacher", "--image", str(files["image"]), "--labels", str(empty)]
        + ["--out", str(tmp_path / "t.pt"), *TRAIN_FLAGS],
        capsys,
    )
    assert "no annotated slice" in message


# ------------------------------------------------------------------ stopping and resuming
def test_ctrl_c_saves_the_best_model_and_resume_finishes_it(files, tmp_path, monkeypatch, capsys):
    out = tmp_path / "stopped.pt"
    original = TrainingRun.steps
    validate_every = TrainConfig().validate_every
    stop_at = validate_every + 2  # after the first validation

    def interrupted(self):
        for record in original(self):
            yield record
            if record.step == stop_at:
                raise KeyboardInterrupt

    argv = ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
    argv += ["--out", str(out), *TRAIN_FLAGS, "--steps", str(stop_at + 4)]
    with monkeypatch.context() as patch:
        patch.setattr(TrainingRun, "steps", interrupted)
        capsys.readouterr()
        assert main(argv) == 130
    assert "stopped" in capsys.readouterr().err
    bundle, checkpoint = load_checkpoint(out, kind="teacher")
    assert checkpoint["step"] == stop_at
    assert checkpoint["resume"]["total_steps"] == stop_at + 4
    assert bundle.extra["best_step"] == validate_every  # the best weights, not the last

    assert main([*argv, "--resume", str(out)]) == 0
    _, finished = load_checkpoint(out, kind="teacher")
    assert finished["step"] == stop_at + 4
    assert [r["step"] for r in finished["resume"]["history"]] == list(range(1, stop_at + 5))
