"""The command line on files as users bring them (issue 30): NaN pixels, negative label ids.

Each ends in a result and a warning, or in one line on stderr; never in a traceback.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_distill.cli import main
from napari_distill.core.training import TrainingRun
from synthetic import disk_square_volume

TRAIN_FLAGS = ["--steps", "4", "--base-channels", "4", "--depth", "2", "--patch-size", "32"]
TRAIN_FLAGS += ["--device", "cpu", "--quiet"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: a second thread only waits
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """image.tif (float32), sparse.tif (slices 0, 3, 6 painted)."""
    folder = tmp_path_factory.mktemp("user_files")
    image, truth = disk_square_volume(noise=8.0)
    sparse = np.zeros_like(truth)
    sparse[[0, 3, 6]] = truth[[0, 3, 6]]
    paths = {"image": folder / "image.tif", "sparse": folder / "sparse.tif"}
    tifffile.imwrite(paths["image"], image.astype(np.float32))
    tifffile.imwrite(paths["sparse"], sparse)
    return paths


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
