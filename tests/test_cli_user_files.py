"""The command line on files as users bring them (issue 30): NaN pixels, negative label ids.

Each ends in a result and a warning, or in one line on stderr; never in a traceback.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.models import load_checkpoint
from napari_distill.core.training import TrainingRun
from synthetic import disk_square_volume

TRAIN_FLAGS = ["--steps", "20", "--base-channels", "8", "--depth", "3", "--patch-size", "32"]
TRAIN_FLAGS += ["--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """image.tif (float32), holes.tif (the same with NaN and Inf pixels: NAN_PIXELS of them
    on slices 2 and 5), sparse.tif (slices 0, 3, 6 painted)."""
    folder = tmp_path_factory.mktemp("user_files")
    image, truth = disk_square_volume(noise=8.0)
    sparse = np.zeros_like(truth)
    sparse[[0, 3, 6]] = truth[[0, 3, 6]]
    holes = image.copy()
    holes[2, :, :6] = np.nan  # outside a reconstruction's field of view
    holes[5, 10, 10] = np.inf
    paths = {"image": folder / "image.tif", "sparse": folder / "sparse.tif"}
    paths["holes"] = folder / "holes.tif"
    tifffile.imwrite(paths["image"], image)
    tifffile.imwrite(paths["holes"], holes)
    tifffile.imwrite(paths["sparse"], sparse)
    return paths


NAN_PIXELS = 48 * 6 + 1


@pytest.fixture(scope="module")
def teacher(files):
    out = files["image"].parent / "teacher.pt"
    argv = ["train-teacher", "--image", str(files["image"]), "--labels", str(files["sparse"])]
    assert main([*argv, "--out", str(out), *TRAIN_FLAGS]) == 0
    return out


def one_line_error(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    return line


def test_negative_label_ids_are_refused_before_training(files, tmp_path, capsys, monkeypatch):
    negative = tmp_path / "negative.tif"
    labels = tifffile.imread(files["sparse"]).astype(np.int8)
    labels[3][labels[3] == 2] = -1
    tifffile.imwrite(negative, labels)
    monkeypatch.setattr(TrainingRun, "steps", lambda self: pytest.fail("training started"))
    out = tmp_path / "t.pt"
    line = one_line_error(
        ["train-teacher", "--image", str(files["image"]), "--labels", str(negative)]
        + ["--out", str(out), *TRAIN_FLAGS],
        capsys,
    )
    assert "negative.tif holds negative label ids -1 (" in line and not out.exists()


def _warning(err: str) -> str:
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if "warning:" in line]
    return line


def test_predict_on_an_image_with_nan_warns_and_labels_it(files, teacher, tmp_path, capsys):
    predict = ["predict", "--model", str(teacher), "--device", "cpu", "--quiet"]
    clean, holes = tmp_path / "clean.tif", tmp_path / "holes.tif"
    assert main([*predict, "--image", str(files["image"]), "--out", str(clean)]) == 0
    capsys.readouterr()
    assert main([*predict, "--image", str(files["holes"]), "--out", str(holes)]) == 0
    line = _warning(capsys.readouterr().err)
    assert line.startswith("napari-distill predict: warning: ")
    assert f"holes.tif holds {NAN_PIXELS} NaN or infinite pixels" in line
    expected, labels = tifffile.imread(clean), tifffile.imread(holes)
    assert np.count_nonzero(expected) > 0  # the teacher finds the disks and squares ...
    untouched = [0, 1, 3, 4, 6, 7]  # ... and the slices without NaN are labelled as before
    np.testing.assert_array_equal(labels[untouched], expected[untouched])
    assert np.count_nonzero(labels[2, :, 6:]) > 0  # so is the rest of the slice with NaN


def test_train_teacher_on_an_image_with_nan_warns_and_trains(files, tmp_path, capsys):
    out = tmp_path / "teacher.pt"
    argv = ["train-teacher", "--image", str(files["holes"]), "--labels", str(files["sparse"])]
    capsys.readouterr()
    assert main([*argv, "--out", str(out), *TRAIN_FLAGS]) == 0
    line = _warning(capsys.readouterr().err)
    assert f"holes.tif holds {NAN_PIXELS} NaN or infinite pixels" in line
    bundle, checkpoint = load_checkpoint(out, kind="teacher")
    assert checkpoint["step"] == 20
    assert np.isfinite(bundle.normalization.low + bundle.normalization.high).all()
