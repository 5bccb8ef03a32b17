"""Views: a teacher ensemble whose members slice the volume along its three axes.

The geometry on hand-made pointwise members (a network that looks at one pixel at a time
predicts the same thing along every axis, so each view must land back where the slices'
prediction is), the members' row-weighted objective, validation, prediction with bands and
memory maps, training, checkpoints and the student's starting member.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from napari_distill.core.config import KDConfig, ModelConfig, PredictConfig, TrainConfig
from napari_distill.core.inference import predict_bundle, predict_stack
from napari_distill.core.inference.views import members_by_axis, row_bands
from napari_distill.core.models import ModelBundle, load_checkpoint, save_checkpoint
from napari_distill.core.models.networks import ModelEnsemble, ensemble_members, slice_members
from napari_distill.core.preprocess import Normalization, as_stack
from napari_distill.core.progress import run_to_completion
from napari_distill.core.strategies import build_kd
from napari_distill.core.strategies.base import student_model
from napari_distill.core.training import Augmentation, SliceValidator, train_teacher
from napari_distill.core.training.views import ViewValidator, view_objective
from synthetic import fixed_disk_square_volume as tiny_volume

torch.set_num_threads(2)

TINY_VIEWS = ModelConfig(base_channels=4, depth=3, dropout=0.0, members=3, views=True)
TINY_TRAIN = TrainConfig(
    steps=6, batch_size=2, patch_size=16, validate_every=3, augment=False, seed=0
)


class Pointwise(nn.Module):
    """Logits from each pixel alone (a 1x1 convolution): blind to orientation."""

    def __init__(self, classes: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


TINY_PATCH = TrainConfig(patch_size=16)  # eight rows of context around a wanted slice


def pointwise_bundle(stack: np.ndarray, members: int = 3) -> ModelBundle:
    config = dataclasses.replace(TINY_VIEWS, num_classes=3, members=members)
    model = ModelEnsemble(config)
    model.members = nn.ModuleList(Pointwise(seed=m) for m in range(members))
    return ModelBundle(
        model=model,
        model_config=config,
        class_ids=(0, 1, 2),
        class_names={},
        normalization=Normalization.from_image(stack),
        kind="teacher",
        train_config=TINY_PATCH,
    )


def test_config_needs_a_member_per_axis_and_students_drop_views():
    with pytest.raises(ValueError, match="at least 3 members"):
        ModelConfig(members=2, views=True)
    config = ModelConfig(members=4, views=True)
    assert [config.member_axis(m) for m in range(4)] == [0, 1, 2, 0]
    assert [ModelConfig(members=3).member_axis(m) for m in range(3)] == [0, 0, 0]
    assert not config.single().views and not config.student().views


def test_row_bands_cover_each_row_with_its_margin_and_merge():
    assert row_bands([5], 2, 20) == [(3, 8)]
    assert row_bands([0, 19], 3, 20) == [(0, 4), (16, 20)]
    assert row_bands([4, 7, 15], 2, 20) == [(2, 10), (13, 18)]  # 4 and 7 overlap
    assert row_bands([], 2, 20) == []


def test_views_of_a_pointwise_model_land_back_on_the_slices(tmp_path):
    image, _ = tiny_volume(n=24, size=16)  # bands of 8 rows around slices 1 and 6: 0-14
    stack = as_stack(image)
    bundle = pointwise_bundle(stack)
    # Each pointwise member predicts the same along any axis: the views' mean is the mean of
    # the three members predicted slice by slice (every pixel predicted: cropping to tissue
    # sets what lies outside each slice's box to background, and boxes differ by axis).
    whole = PredictConfig(crop_to_tissue=False, skip_empty_tiles=False)
    probabilities = []
    for member in ensemble_members(bundle.model):
        prediction = run_to_completion(
            predict_stack(
                member,
                image,
                normalization=bundle.normalization,
                class_ids=(0, 1, 2),
                config=whole,
                device="cpu",
            )
        )
        probabilities.append(prediction.probabilities)
    expected = np.mean(probabilities, axis=0)
    views = run_to_completion(predict_bundle(bundle, image, config=whole, device="cpu"))
    np.testing.assert_allclose(views.probabilities, expected, atol=1e-5)
    np.testing.assert_array_equal(views.labels, expected.argmax(0))
    # A few slices, through memory maps: the same numbers there, background elsewhere, and
    # no intermediate file left behind.
    generator = predict_bundle(
        bundle, image, config=whole, device="cpu", slices=[6, 1], out_dir=tmp_path
    )
    progress = []
    while True:
        try:
            progress.append(next(generator))
        except StopIteration as stop:
            some = stop.value
            break
    assert progress[-1].done == progress[-1].total == len(progress)
    assert some.slices == (1, 6)
    np.testing.assert_allclose(
        some.probabilities[:, [1, 6]].astype(np.float32), expected[:, [1, 6]], atol=2e-3
    )
    assert not some.labels[[0, 2, 3, 4, 5, 7, 20]].any()
    assert not np.asarray(some.probabilities[:, 3]).any()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npy", "probabilities.npy"]


def test_a_single_slice_is_predicted_by_the_members_along_the_first_axis():
    image, _ = tiny_volume(n=8, size=16)
    bundle = pointwise_bundle(as_stack(image), members=4)  # axes 0, 1, 2, 0
    groups = members_by_axis(bundle)
    assert {axis: len(members) for axis, members in groups.items()} == {0: 2, 1: 1, 2: 1}
    assert slice_members(bundle.model) == groups[0]
    x = torch.randn(1, 1, 8, 8)
    first, _, _, fourth = ensemble_members(bundle.model)
    mean = (torch.softmax(first(x), 1) + torch.softmax(fourth(x), 1)) / 2
    torch.testing.assert_close(torch.softmax(bundle.model(x), 1), mean)


def test_a_view_member_learns_from_the_painted_rows_only():
    image, truth = tiny_volume(n=8, size=16)
    stack = as_stack(image)
    labels = np.zeros_like(truth)
    labels[[1, 5]] = truth[[1, 5]]
    labels[3] = truth[3]  # painted but held out: must not reach the member
    bundle = pointwise_bundle(stack)
    objective = view_objective(
        stack, labels, [1, 5], 2, bundle, TrainConfig(batch_size=16, patch_size=16),
        Augmentation.none(),
    )  # fmt: skip
    batch = objective.batch(np.random.default_rng(0))
    weight, y = batch["weight"], batch["y"]
    assert batch["x"].shape == (16, 1, 8, 16)  # patches clipped to the 8 slices
    assert set(torch.unique(weight).tolist()) <= {0.0, 1.0}
    assert not y[weight == 0].any()  # only painted training rows carry labels
    assert y[weight == 1].any()
    sampler = objective.sampler
    assert len(sampler.slice_indices) == 16  # every slice along axis 2
    target = sampler.target_indices[4]  # the slice at x = 4: rows are the stack's slices
    np.testing.assert_array_equal(target[[1, 5]], truth[[1, 5], :, 4])
    assert not target[3].any()


def test_a_view_validator_scores_like_the_slices_for_a_pointwise_model():
    image, truth = tiny_volume(n=8, size=16)
    stack = as_stack(image)
    bundle = pointwise_bundle(stack)
    member = ensemble_members(bundle.model)[1]
    common = (stack, truth, [2, 6], (0, 1, 2), bundle.normalization, torch.device("cpu"))
    slices = SliceValidator(*common)
    for axis in (1, 2):
        view = ViewValidator(*common, axis=axis, margin=2)  # bands 0-4 and 4-8
        np.testing.assert_array_equal(view.predict(member), slices.predict(member))
        assert view(member) == pytest.approx(slices(member))


@pytest.fixture(scope="module")
def views_teacher():
    image, truth = tiny_volume(n=8, size=32)
    labels = np.zeros_like(truth)
    labels[[1, 3, 5, 7]] = truth[[1, 3, 5, 7]]
    run = train_teacher(
        image, labels, model_config=TINY_VIEWS, train_config=TINY_TRAIN, device="cpu"
    )
    return image, labels, run_to_completion(run.steps())


def test_a_views_teacher_trains_saves_and_predicts(views_teacher, tmp_path):
    image, _, bundle = views_teacher
    assert bundle.model_config.views and bundle.model_config.members == 3
    prediction = run_to_completion(predict_bundle(bundle, image, device="cpu"))
    assert prediction.probabilities.shape == (3, *image.shape)
    np.testing.assert_allclose(prediction.probabilities.sum(0), 1.0, atol=1e-4)
    save_checkpoint(tmp_path / "views.pt", bundle)
    loaded, _ = load_checkpoint(tmp_path / "views.pt")
    assert loaded.model_config.views
    again = run_to_completion(predict_bundle(loaded, image, device="cpu"))
    np.testing.assert_allclose(again.probabilities, prediction.probabilities, atol=1e-5)


def test_a_student_of_a_views_teacher_starts_from_a_first_axis_member(views_teacher):
    _, _, bundle = views_teacher
    model, config, started = student_model(bundle, True, False, 0)
    assert started and not config.views and config.members == 1
    first = ensemble_members(bundle.model)[0]
    for mine, theirs in zip(model.parameters(), first.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs.cpu())


def test_views_refuse_a_single_image():
    image, truth = tiny_volume(n=1, size=32)
    with pytest.raises(ValueError, match="turn views off for a single image"):
        train_teacher(
            image[0], truth[0], model_config=TINY_VIEWS, train_config=TINY_TRAIN, device="cpu"
        )


def test_a_student_distils_from_the_views_probabilities(views_teacher, monkeypatch):
    image, labels, bundle = views_teacher
    accepted = [0, 2, 4, 6]
    run = build_kd(
        bundle, image, labels, accepted, train_config=TINY_TRAIN, strategy_config=KDConfig(),
        device="cpu",
    )  # fmt: skip
    expected = run_to_completion(
        predict_bundle(bundle, image, device="cpu", slices=accepted)
    ).probabilities
    objective = run.objective
    sampler = next(s for s, weight in objective.samplers if weight > 0)  # the accepted slices
    assert sampler.slice_indices == tuple(accepted)
    for position, index in enumerate(accepted):
        np.testing.assert_allclose(sampler._soft[position], expected[:, index], atol=1e-6)
    # The teacher network is never run on a patch: its members along the other axes could
    # not see one.
    monkeypatch.setattr(
        type(bundle.model), "forward", lambda *a: pytest.fail("the teacher ran on a patch")
    )
    batch = objective.batch(np.random.default_rng(0))
    assert batch["soft"].shape[1] == 3
    np.testing.assert_allclose(batch["soft"][batch["kd"] > 0].sum(1), 1.0, atol=1e-4)
    loss, terms = objective.loss(run.model, batch)
    assert torch.isfinite(loss) and "kd" in terms
