"""A resumed run can be given a new total of steps (issue 30: ``--steps`` with ``--resume``
was ignored, "resuming at step 3 of 3")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_distill.core.config import KDConfig, ModelConfig, TrainConfig
from napari_distill.core.models import load_checkpoint
from napari_distill.core.strategies import STRATEGIES
from napari_distill.core.training import resume_training, train_teacher
from synthetic import fixed_disk_square_volume

MODEL = ModelConfig(base_channels=4, depth=2, dropout=0.0)
TRAIN = TrainConfig(steps=3, batch_size=2, patch_size=16, validate_every=2, augment=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    image, truth = fixed_disk_square_volume(n=6, size=32, seed=0)
    labels = np.zeros_like(truth)
    labels[[0, 2, 4]] = truth[[0, 2, 4]]
    return image, labels


@pytest.fixture(scope="module")
def finished_teacher(data, tmp_path_factory):
    """A teacher run that completed its 3 steps, saved."""
    torch.manual_seed(0)
    run = train_teacher(*data, model_config=MODEL, train_config=TRAIN, device="cpu")
    assert [r.step for r in run.steps()] == [1, 2, 3] and run.stop_reason == "completed"
    return run.save(tmp_path_factory.mktemp("resume") / "teacher.pt")


def test_a_finished_teacher_trains_on_to_a_new_total(data, finished_teacher, tmp_path):
    run = resume_training(finished_teacher, *data, device="cpu")
    assert (run.step, run.total_steps) == (3, 3)
    run.set_total_steps(6, "teacher.pt")
    assert [r.step for r in run.steps()] == [4, 5, 6]
    assert [r.step for r in run.history] == [1, 2, 3, 4, 5, 6]
    _, checkpoint = load_checkpoint(run.save(tmp_path / "longer.pt"), kind="teacher")
    assert checkpoint["step"] == 6 and checkpoint["resume"]["total_steps"] == 6
    assert checkpoint["train_config"]["steps"] == 6  # the new total is the run's setting now


def test_a_total_below_the_step_reached_is_refused(data, finished_teacher):
    run = resume_training(finished_teacher, *data, device="cpu")
    with pytest.raises(ValueError, match="teacher.pt has already trained 3 steps: a total of 2"):
        run.set_total_steps(2, "teacher.pt")
    run.set_total_steps(3)  # the same total: nothing to do
    assert list(run.steps()) == []


def test_a_live_run_that_completed_or_stopped_early_goes_on_when_given_more(data):
    run = train_teacher(*data, model_config=MODEL, train_config=TRAIN, device="cpu")
    list(run.steps())
    run.set_total_steps(4)
    assert [r.step for r in run.steps()] == [4]
    run.stop_reason = "early_stopping"
    run.set_total_steps(5)
    assert [r.step for r in run.steps()] == [5]


def test_a_resumed_student_trains_on_to_a_new_total(data, finished_teacher, tmp_path):
    teacher, _ = load_checkpoint(finished_teacher, kind="teacher")
    config = TrainConfig(steps=2, batch_size=2, patch_size=16, validate_every=2, augment=False)
    run = STRATEGIES["kd"].build(
        teacher, *data, [1, 3], train_config=config, strategy_config=KDConfig(), device="cpu"
    )
    list(run.steps())
    path = run.save(tmp_path / "student.pt")
    resumed = STRATEGIES["kd"].build(teacher, *data, [], device="cpu", resume_from=path)
    assert (resumed.step, resumed.total_steps) == (2, 2)
    with pytest.raises(ValueError, match="has already trained 2 steps"):
        resumed.set_total_steps(1)
    resumed.set_total_steps(4)
    assert [r.step for r in resumed.steps()] == [3, 4]
