"""A cell run stopped, saved and resumed from its file takes the steps an uninterrupted run
takes: the student, the EMA teacher, the adaptors and the optimiser end equal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_distill.core.models.cells import CellModelConfig, load_training_state
from napari_distill.core.samples import make_pap_smear
from napari_distill.core.strategies.cell_configs import MeanTeacherConfig
from napari_distill.core.strategies.cell_runs import (
    mean_teacher_run,
    prepare_cell_inputs,
    resume_cell_run,
    teacher_cell_run,
)
from napari_distill.core.training.cells import CellTrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = CellTrainConfig(steps=8, patch_size=48, nucleus_batch=1, cell_batch=2, seed=0)
# full weight from the first step and a refresh of the teacher's nuclei on both sides of the stop
SETTINGS = MeanTeacherConfig(rampup_steps=0, unlabeled_patches=1, unlabeled_windows=2,
                             refresh_every=3)  # fmt: skip


@pytest.fixture(scope="module")
def painted():
    sample = make_pap_smear(n_fields=3, field_shape=(64, 64), seed=2)
    image = sample.image.mean(-1)
    planes = sample.cytoplasm_planes.transpose(1, 0, 2, 3).copy()
    nuclei = sample.nuclei.copy()
    planes[2] = 0
    nuclei[2] = 0
    return image, planes, nuclei


@pytest.fixture(scope="module")
def teacher(painted):
    inputs = prepare_cell_inputs(*painted, rgb=False)
    run = teacher_cell_run(inputs, CellModelConfig(width=4, depth=2, crop_size=16),
                           dataclasses.replace(TRAIN, steps=3))  # fmt: skip
    for _ in run.steps():
        pass
    return run.model


def student_run(painted, teacher):
    torch.manual_seed(0)
    inputs = prepare_cell_inputs(*painted, rgb=False)
    return mean_teacher_run(teacher, inputs, TRAIN, SETTINGS)


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_a_stopped_mean_teacher_run_resumes_from_its_file_exactly(painted, teacher, tmp_path):
    whole = student_run(painted, teacher)
    whole_losses = [r.loss for r in whole.steps()]

    first = student_run(painted, teacher)
    steps = first.steps()
    for _ in range(4):
        next(steps)  # Stop after step 4: the generator is no longer iterated
    steps.close()
    path = first.save(tmp_path / "student.pt")
    state = load_training_state(path)
    assert {"optimizer", "rng", "torch_rng", "objective"} <= set(state)
    assert {"teacher", "adaptors", "pseudo"} <= set(state["objective"])

    torch.manual_seed(123)  # the global random state must come from the file, not from here
    resumed = resume_cell_run(path, *painted, rgb=False)
    assert resumed.step == 4 and resumed.extra["strategy"] == "mean-teacher"
    assert resumed.objective.config == SETTINGS
    assert_same(resumed.objective.teacher.state_dict(), first.objective.teacher.state_dict())
    assert_same(resumed.objective.adaptors.state_dict(), first.objective.adaptors.state_dict())
    rest = [r.loss for r in resumed.steps()]
    assert resumed.step == 8 and len(rest) == 4
    np.testing.assert_allclose(rest, whole_losses[4:], rtol=1e-4)
    assert_same(resumed.model.state_dict(), whole.model.state_dict())
    assert_same(resumed.objective.teacher.state_dict(), whole.objective.teacher.state_dict())
    assert_same(resumed.objective.adaptors.state_dict(), whole.objective.adaptors.state_dict())
    moments = [s["exp_avg"] for s in resumed.optimizer.state_dict()["state"].values()]
    expected = [s["exp_avg"] for s in whole.optimizer.state_dict()["state"].values()]
    for got, want in zip(moments, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    saved = resumed.save(tmp_path / "again.pt")
    assert len(torch.load(saved, weights_only=True)["extra"]["loss"]) == 8  # the whole curve


def test_resume_refuses_other_fields_and_fewer_steps(painted, teacher, tmp_path):
    run = student_run(painted, teacher)
    next(run.steps())
    path = run.save(tmp_path / "student.pt")
    image, planes, nuclei = painted
    with pytest.raises(ValueError, match="cannot be fewer"):
        resume_cell_run(path, image, planes, nuclei, rgb=False, steps=0)
    repainted = planes.copy()
    repainted[2] = planes[0]  # field 2 painted now
    other_nuclei = nuclei.copy()
    other_nuclei[2] = nuclei[0]
    with pytest.raises(ValueError, match="same fields"):
        resume_cell_run(path, image, repainted, other_nuclei, rgb=False)
    longer = resume_cell_run(path, image, planes, nuclei, rgb=False, steps=12)
    assert longer.total_steps == 12 and longer.step == 1


def test_a_supervised_student_starts_from_its_teacher_and_resumes_too(painted, teacher, tmp_path):
    from napari_distill.core.strategies.cell_runs import student_cell_run

    inputs = prepare_cell_inputs(*painted, rgb=False)
    run = student_cell_run("supervised", teacher, inputs, dataclasses.replace(TRAIN, steps=3))
    assert_same(run.model.state_dict(), teacher.state_dict())
    assert run.model is not teacher and run.extra["strategy"] == "supervised"
    steps = run.steps()
    next(steps)
    steps.close()
    resumed = resume_cell_run(run.save(tmp_path / "supervised.pt"), *painted, rgb=False)
    assert resumed.extra["strategy"] == "supervised" and resumed.step == 1
    assert len(list(resumed.steps())) == 2
    with pytest.raises(ValueError, match="unknown cell strategy"):
        student_cell_run("kd", teacher, inputs)
