"""The teacher's plan from the data: measurements, rules, overrides, log and checkpoint."""

import logging

import numpy as np
import pytest

from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.io import read_image, write_image
from napari_distill.core.models import load_checkpoint
from napari_distill.core.preprocess import Normalization
from napari_distill.core.training import (
    TeacherPlan,
    measure,
    plan_for_data,
    plan_teacher,
    train_teacher,
)
from napari_distill.core.training.plan import PLANNED

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def volume(
    n: int = 24,
    size: int = 96,
    organ: float = 0.3,
    thin: int = 9,
    painted: tuple[int, ...] = (8, 12, 16),
    air: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A volume of ``size`` x ``size`` slices: a ball (class 1) ``organ`` of the slice across,
    a bar (class 2) ``thin`` px thick, both continuing through the slices; ``air`` of every
    slice (its left part, outside both) far darker than anything painted."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :size, :size].astype(np.float32)
    c = size / 2
    ball = (y - c) ** 2 + (x - c) ** 2 + ((z - n / 2) * size / n) ** 2 < (organ * size / 2) ** 2
    bar = (np.abs(y - size * 0.85) < thin / 2) & (x > size * 0.4) & (x < size * 0.6)
    image = 100.0 + 50.0 * ball + 80.0 * bar + rng.normal(0, 3, (n, size, size))
    full = np.where(bar, 2, np.where(ball, 1, 0)).astype(np.uint8)
    outside = (x < air * size) & (full == 0)
    image[outside] = -1000.0 + rng.normal(0, 3, int(outside.sum()))
    labels = np.zeros_like(full)
    labels[list(painted)] = full[list(painted)]
    return image.astype(np.float32), labels


def test_large_slices_get_a_wider_field_of_view():
    small = plan_for_data(*volume(size=96), device="cpu")
    large = plan_for_data(*volume(size=384), device="cpu")
    assert small.decision("downsample").value == 1
    assert large.decision("downsample").value >= 2  # the ball spans ~115 px: one patch, 1/2
    model, train = large.apply(ModelConfig(), TrainConfig())
    assert model.image_pixels(train.patch_size) >= measure(*volume(size=384)).largest.extent
    assert "spans" in large.decision("downsample").reason


def test_thin_structures_cap_the_working_scale():
    plan = plan_for_data(*volume(size=384, thin=3), device="cpu")
    decision = plan.decision("downsample")
    assert decision.value == 2  # a 3-px bar holds a whole 2 x 2 block wherever it falls
    assert "3 px thick" in decision.reason and "would need" not in decision.reason
    capped = plan_for_data(*volume(size=384, thin=1), device="cpu").decision("downsample")
    assert capped.value == 1 and "would need 1/2" in capped.reason


def test_anisotropic_spacing_from_a_tiff_changes_the_plan(tmp_path):
    image, labels = volume(n=24, size=96)
    for name, spacing in (("iso", (1.0, 1.0, 1.0)), ("thick", (20.0, 1.0, 1.0))):
        write_image(tmp_path / f"{name}.tif", image, spacing, unit="micrometer")
    iso, thick = (read_image(tmp_path / f"{n}.tif") for n in ("iso", "thick"))
    assert thick.scale[0] == pytest.approx(20.0)  # read from the file's metadata
    plans = [plan_for_data(d.data, labels, spacing=d.scale, device="cpu") for d in (iso, thick)]
    assert plans[0].decision("views").value is True
    assert plans[1].decision("views").value is False  # the ball spans ~1.4 slices of 20
    assert "spacing 20x1x1" in plans[1].decision("views").reason


def test_fields_and_rgb_get_no_views():
    rng = np.random.default_rng(0)
    fields = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    labels = np.zeros((4, 64, 64), np.uint8)
    labels[0, 10:40, 10:40] = 1
    plan = plan_for_data(fields, labels, rgb=True, device="cpu")
    assert plan.decision("views").value is False and "colour" in plan.decision("views").reason
    assert plan.decision("clip_to_foreground").value is False
    grey = fields[..., 0].astype(np.float32)  # unrelated grey fields: not a volume either
    assert plan_for_data(grey, labels, device="cpu").decision("views").value is False


def test_validation_off_when_few_slices_are_painted():
    few = plan_for_data(*volume(painted=(4, 8, 12, 16, 20)), device="cpu", given={"members": 1})
    assert few.decision("validation_fraction").value == 0.0
    assert "holding out 1" in few.decision("validation_fraction").reason
    many = plan_for_data(*volume(n=40, painted=tuple(range(3, 36, 2))), device="cpu")
    assert many.decision("validation_fraction").value == TrainConfig().validation_fraction


def test_networks_of_an_ensemble_keep_holding_out_different_slices():
    """With several networks the held-out slices cost no paint (the others train on them) and
    let the run score the teacher against label propagation: validation stays on."""
    ensemble = plan_for_data(
        *volume(painted=(4, 8, 12, 16, 20)), device="cpu", given={"members": 3}
    )
    decision = ensemble.decision("validation_fraction")
    assert decision.value == TrainConfig().validation_fraction
    assert "propagation" in decision.reason


def test_air_around_the_painted_structures_is_clipped():
    plan = plan_for_data(*volume(air=0.4), device="cpu")
    assert plan.decision("clip_to_foreground").value is True
    assert plan_for_data(*volume(), device="cpu").decision("clip_to_foreground").value is False
    image, labels = volume(air=0.4)
    norm = Normalization.from_foreground(image[..., None], labels, np.array([8, 12, 16]))
    assert norm.clip and norm.apply(image[..., None]).min() == 0.0
    assert Normalization.from_dict({"low": [0.0], "high": [1.0]}).clip is False  # old files


def test_the_users_settings_win():
    fp = measure(*volume(size=384))
    given = {"downsample": 1, "views": False, "validation_fraction": 0.5, "batch_size": 3}
    plan = plan_teacher(fp, "cpu", given=given)
    model, train = plan.apply(None, None)
    assert (model.downsample, model.views, train.validation_fraction) == (1, False, 0.5)
    assert train.batch_size == 3 and model.members == 1
    assert plan.decision("downsample").source == "user"
    assert "the plan: 2" in plan.decision("downsample").reason
    assert plan.decision("patch_size").source == "plan"
    with pytest.raises(ValueError, match="not planned"):
        plan_teacher(fp, "cpu", given={"depth": 5})


def test_too_few_members_for_views_turn_views_off():
    plan = plan_for_data(*volume(), device="cpu", given={"members": 2})
    assert plan.decision("views").value is False
    assert "need 3 networks and 2 was set" in plan.decision("views").reason


def test_data_sliced_along_one_axis_only_get_no_views_saying_why():
    image, labels = volume()
    assert plan_for_data(image, labels, device="cpu").decision("views").value is True
    why = "several volumes end to end"
    plan = plan_for_data(image, labels, device="cpu", one_axis=why, given={"views": False})
    decision = plan.decision("views")
    assert (decision.value, decision.reason, decision.source) == (False, why, "plan")
    assert plan.decision("members").value == 1  # not raised for views
    with pytest.raises(ValueError, match=f"views cannot be used here: {why}"):
        plan_for_data(image, labels, device="cpu", one_axis=why, given={"views": True})


def test_a_gpu_batch_comes_from_its_free_memory():
    fp = measure(*volume())
    small = plan_teacher(fp, "cuda", free_memory=2 * 10**8).decision("batch_size").value
    large = plan_teacher(fp, "cuda", free_memory=16 * 10**9).decision("batch_size").value
    assert small == TrainConfig().batch_size < large <= 64
    assert plan_teacher(fp, "cpu").decision("batch_size").value == TrainConfig().batch_size


def test_every_decision_is_logged_and_stored(tmp_path, caplog):
    image, labels = volume(n=16, size=48, organ=0.5, painted=(5, 10))
    plan = plan_for_data(image, labels, device="cpu", given={"steps": 1, "views": False})
    with caplog.at_level(logging.INFO, logger="napari_distill"):
        run = train_teacher(image, labels, plan=plan, device="cpu")
        for _ in run.steps():
            pass
    logged = [r.getMessage() for r in caplog.records]
    assert {d.setting for d in plan.decisions} == set(PLANNED)
    for line in plan.lines():
        assert line in logged
    run.save(tmp_path / "t.pt")
    bundle, _ = load_checkpoint(tmp_path / "t.pt")  # weights_only: plain values
    stored = TeacherPlan.from_dict(bundle.extra["plan"])
    assert stored.decisions == plan.decisions
    assert stored.fingerprint["height"] == 48
    assert bundle.model_config.downsample == plan.decision("downsample").value
    assert bundle.train_config.validation_fraction == plan.decision("validation_fraction").value
