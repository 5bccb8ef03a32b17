"""``train-teacher`` logs the teacher against label propagation on the painted slices its
networks held out (issue 25), and says plainly when no fair comparison is possible."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from synthetic import disk_square_volume

FLAGS = ["--steps", "6", "--base-channels", "8", "--depth", "3", "--patch-size", "32"]
FLAGS += ["--device", "cpu", "--quiet", "--class-names", "1=disk,2=square"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare")
    image, truth = disk_square_volume(noise=8.0)
    sparse = np.zeros_like(truth)
    sparse[[0, 3, 6]] = truth[[0, 3, 6]]
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "sparse.tif", sparse)
    return folder


def train(files, out, *extra, caplog) -> str:
    caplog.clear()
    argv = ["train-teacher", "--image", str(files / "image.tif")]
    argv += ["--labels", str(files / "sparse.tif"), "--out", str(out), *FLAGS, *extra]
    with caplog.at_level(logging.INFO, logger="napari_distill"):
        assert main(argv) == 0
    return caplog.text


def test_three_teachers_are_compared_per_class_with_flow_propagation(files, tmp_path, caplog):
    text = train(files, tmp_path / "three.pt", "--teachers", "3", caplog=caplog)
    assert "teacher vs propagation: flow propagation (" in text  # a small volume: flow
    assert "painted slice(s) the teacher never trained on" in text
    for name in ("disk", "square"):
        assert f"  {name}" in text and "teacher IoU" in text


def test_a_teacher_that_held_out_nothing_says_how_to_compare(files, tmp_path, caplog):
    text = train(files, tmp_path / "one.pt", "--validation-fraction", "0", caplog=caplog)
    assert "No fair comparison with propagation: the teacher trained on every painted" in text
    assert "3 teachers" in text
