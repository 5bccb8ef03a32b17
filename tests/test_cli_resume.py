"""``--resume`` on the command line (issue 30): ``--out`` is never an unrelated file replaced
without ``--overwrite`` (the checkpoint itself is fine: resuming in place), and ``--steps``
sets a resumed run's new total."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.models import load_checkpoint
from synthetic import fixed_disk_square_volume

TINY = ["--base-channels", "4", "--depth", "2", "--patch-size", "16", "--batch-size", "2"]
QUIET = ["--device", "cpu", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    image, truth = fixed_disk_square_volume(n=6, size=32, seed=0)
    labels = np.zeros_like(truth)
    labels[[0, 2, 4]] = truth[[0, 2, 4]]
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "labels.tif", labels)
    data = ["--image", str(folder / "image.tif"), "--labels", str(folder / "labels.tif")]
    teacher = folder / "teacher.pt"
    assert main(["train-teacher", *data, "--out", str(teacher), "--steps", "3", *TINY, *QUIET]) == 0
    return folder, data, teacher


def error_line(argv: list[str], capsys) -> str:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    [line] = [line for line in err.splitlines() if line.strip()]
    return line


def step_of(path) -> int:
    return load_checkpoint(path)[1]["step"]


def test_train_teacher_resume(inputs, tmp_path, capsys):
    _, data, teacher = inputs
    resumed = tmp_path / "teacher.pt"
    resumed.write_bytes(teacher.read_bytes())
    unrelated = tmp_path / "other.pt"
    unrelated.write_bytes(b"another run's checkpoint")
    train = ["train-teacher", *data, "--resume", str(resumed), *QUIET]

    line = error_line([*train, "--out", str(unrelated)], capsys)
    assert "other.pt already exists" in line and "--overwrite" in line
    assert unrelated.read_bytes() == b"another run's checkpoint"

    assert main([*train, "--out", str(resumed), "--steps", "5"]) == 0  # in place, longer
    assert step_of(resumed) == 5
    line = error_line([*train, "--out", str(resumed), "--steps", "4"], capsys)
    assert "teacher.pt has already trained 5 steps: a total of 4 steps cannot be fewer" in line
    assert step_of(resumed) == 5

    assert main([*train, "--out", str(unrelated), "--steps", "6", "--overwrite"]) == 0
    assert step_of(unrelated) == 6 and step_of(resumed) == 5


def test_distill_resume(inputs, tmp_path, capsys):
    _, data, teacher = inputs
    distill = ["distill", "--teacher", str(teacher), *data, *QUIET]
    student, unrelated = tmp_path / "student.pt", tmp_path / "other.pt"
    assert main([*distill, "--out", str(student), "--steps", "2"]) == 0
    unrelated.write_bytes(b"another run's checkpoint")
    resume = [*distill, "--resume", str(student)]

    line = error_line([*resume, "--out", str(unrelated)], capsys)
    assert "other.pt already exists" in line
    assert unrelated.read_bytes() == b"another run's checkpoint"

    assert main([*resume, "--out", str(student), "--steps", "4"]) == 0  # in place, longer
    assert step_of(student) == 4
    line = error_line([*resume, "--out", str(student), "--steps", "3"], capsys)
    assert "student.pt has already trained 4 steps" in line
