"""``--threads``: every command that computes takes it, the count reaches torch inside the
command (and is restored after it), and a count that is not one is refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_distill.cli import main
from napari_distill.core import device as device_module
from napari_distill.core import training
from synthetic import disk_square_volume

COMPUTING = ("train-teacher", "predict", "quality-fit", "quality-score", "distill", "run")
TINY = ["--steps", "2", "--base-channels", "4", "--depth", "2", "--patch-size", "32"]
TINY += ["--device", "cpu", "--quiet", "--no-deep-supervision"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("threads")
    image, truth = disk_square_volume(n=6, size=32)
    sparse = np.zeros_like(truth)
    sparse[[0, 3]] = truth[[0, 3]]
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "sparse.tif", sparse)
    return folder


def train_argv(folder, name: str) -> list[str]:
    return ["train-teacher", "--image", str(folder / "image.tif")] + [
        "--labels", str(folder / "sparse.tif"), "--out", str(folder / name), "--overwrite",
    ]  # fmt: skip


@pytest.fixture
def threads_seen(monkeypatch):
    """The torch thread count at the moment the command starts training."""
    seen: list[int] = []
    real = training.train_teacher

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "train_teacher", spy)
    before = torch.get_num_threads()
    yield seen
    torch.set_num_threads(before)


@pytest.mark.parametrize("name", COMPUTING)
def test_every_computing_command_takes_threads(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    assert "--threads N" in capsys.readouterr().out


def test_threads_reach_torch_inside_the_command_and_are_restored(files, threads_seen):
    torch.set_num_threads(2)
    assert main([*train_argv(files, "one.pt"), *TINY, "--threads", "1"]) == 0
    assert threads_seen == [1]
    assert torch.get_num_threads() == 2  # main leaves the process as it found it


def test_auto_threads_follow_the_rule(files, threads_seen, monkeypatch):
    monkeypatch.setattr(device_module, "cpu_count", lambda: 4)
    monkeypatch.setattr(device_module, "_TORCH_DEFAULT_THREADS", 4)
    torch.set_num_threads(1)
    assert main([*train_argv(files, "auto.pt"), *TINY]) == 0  # --threads auto by default
    assert threads_seen == [3]  # every core but one
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "many"])
def test_a_thread_count_that_is_not_one_is_refused_in_one_line(files, value, capsys):
    capsys.readouterr()
    code = main([*train_argv(files, "refused.pt"), *TINY, f"--threads={value}"])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-distill train-teacher: error: --threads:")
    assert repr(value) in lines[0]
    assert not (files / "refused.pt").exists()
