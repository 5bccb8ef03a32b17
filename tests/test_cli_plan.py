"""``train-teacher`` and ``run`` plan the teacher from the data unless ``--no-plan``: each
decision is logged, stored in the checkpoint, and any option given wins over it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from napari_distill.cli import main
from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.io import write_image, write_labels
from napari_distill.core.models import load_checkpoint

TINY = ["--steps", "1", "--base-channels", "4", "--depth", "3", "--device", "cpu", "--quiet"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ball_volume(n: int = 16, size: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """A ball (class 1) and a bar (class 2) continuing through ``n`` slices, three painted."""
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:n, :size, :size].astype(np.float32)
    ball = (y - size / 2) ** 2 + (x - size / 2) ** 2 + ((z - n / 2) * size / n) ** 2 < (
        size / 4
    ) ** 2
    bar = (np.abs(y - size * 0.85) < 3) & (np.abs(x - size / 2) < size / 8)
    image = 100 + 50 * ball + 80 * bar + rng.normal(0, 3, ball.shape)
    full = np.where(bar, 2, np.where(ball, 1, 0)).astype(np.uint8)
    labels = np.zeros_like(full)
    labels[[5, 8, 11]] = full[[5, 8, 11]]
    return image.astype(np.uint16), labels


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    image, labels = ball_volume()
    paths = {}
    for name, spacing in (("iso", (1.0, 1.0, 1.0)), ("thick", (30.0, 1.0, 1.0))):
        paths[name] = write_image(folder / f"{name}.tif", image, spacing, unit="micrometer")
    paths["labels"] = write_labels(folder / "labels.tif", labels)
    return paths


def train(files, out, image="iso", *extra) -> int:
    argv = ["train-teacher", "--image", str(files[image]), "--labels", str(files["labels"])]
    return main([*argv, "--out", str(out), *TINY, *extra])


def test_the_plan_is_logged_and_stored(files, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="napari_distill"):
        assert train(files, tmp_path / "t.pt") == 0
    bundle, _ = load_checkpoint(tmp_path / "t.pt")
    plan = bundle.extra["plan"]
    logged = caplog.text
    for decision in plan["decisions"]:
        assert f"{decision['setting']} " in logged and decision["reason"] in logged
    decisions = {d["setting"]: d for d in plan["decisions"]}
    assert decisions["steps"]["source"] == "user"  # --steps 1 was given
    assert decisions["views"]["value"] is True  # a volume whose ball spans many slices
    assert bundle.model_config.views and bundle.model_config.members == 3
    assert bundle.train_config.validation_fraction == 0.2  # 3 networks: each holds one out
    assert plan["fingerprint"]["spacing"] == [1.0, 1.0, 1.0]


def test_the_files_spacing_changes_the_plan(files, tmp_path):
    assert train(files, tmp_path / "thick.pt", "thick", "--teachers", "1") == 0
    bundle, _ = load_checkpoint(tmp_path / "thick.pt")
    plan = {d["setting"]: d for d in bundle.extra["plan"]["decisions"]}
    assert bundle.extra["plan"]["fingerprint"]["spacing"] == [30.0, 1.0, 1.0]
    assert plan["views"]["value"] is False and "spacing 30x1x1" in plan["views"]["reason"]
    assert plan["members"]["source"] == "user"


def test_options_given_win_over_the_plan(files, tmp_path):
    extra = ["--no-views", "--downsample", "2", "--validation-fraction", "0.4"]
    assert train(files, tmp_path / "t.pt", "iso", *extra, "--batch-size", "3") == 0
    bundle, _ = load_checkpoint(tmp_path / "t.pt")
    assert not bundle.model_config.views and bundle.model_config.downsample == 2
    assert bundle.train_config.validation_fraction == 0.4
    assert bundle.train_config.batch_size == 3
    sources = {d["setting"]: d["source"] for d in bundle.extra["plan"]["decisions"]}
    assert sources["downsample"] == sources["views"] == sources["batch_size"] == "user"
    assert sources["clip_to_foreground"] == "plan"


def test_no_plan_gives_the_fixed_defaults(files, tmp_path):
    assert train(files, tmp_path / "t.pt", "iso", "--no-plan") == 0
    bundle, _ = load_checkpoint(tmp_path / "t.pt")
    assert "plan" not in bundle.extra
    defaults, config = TrainConfig(), bundle.train_config
    assert (bundle.model_config.downsample, bundle.model_config.members) == (1, 1)
    assert bundle.model_config.views is ModelConfig().views
    assert (config.batch_size, config.patch_size) == (defaults.batch_size, defaults.patch_size)
    assert config.validation_fraction == defaults.validation_fraction
    assert config.clip_to_foreground is False
