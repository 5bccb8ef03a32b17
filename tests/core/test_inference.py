"""Tiled prediction, tissue crop, empty-tile skip, memory-mapped outputs, stopping."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from napari_distill.core.config import PredictConfig
from napari_distill.core.inference import (
    Prediction,
    PredictProgress,
    predict_slice_probabilities,
    predict_stack,
)
from napari_distill.core.inference.tiling import choose_tile, receptive_field, tile_grid
from napari_distill.core.inference.tissue import estimate_background, tissue_bounding_box
from napari_distill.core.models import MemberMean
from napari_distill.core.preprocess import Normalization, as_stack
from napari_distill.core.progress import run_to_completion

CPU = torch.device("cpu")
WHOLE = PredictConfig(crop_to_tissue=False, skip_empty_tiles=False)


class LocalNet(nn.Module):
    """Two 3x3 convolutions: a receptive field of 5 pixels, no global operation."""

    def __init__(self, in_channels: int = 1, num_classes: int = 3):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(8, num_classes, 3, padding=1),
        )
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 4 * self.body(x)


class ConstantNet(nn.Module):
    """The same logits everywhere, whatever the input."""

    def __init__(self, num_classes: int = 3):
        super().__init__()
        self.logits = nn.Parameter(torch.linspace(-1.0, 2.0, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], self.logits.numel(), *x.shape[2:])
        return self.logits[None, :, None, None].expand(shape) + 0 * x[:, :1]


def plain_softmax(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)[None]), dim=1)[0].numpy()


def ct_like_stack(n: int = 4, size: tuple[int, int] = (64, 80), seed: int = 0) -> np.ndarray:
    """Noisy background with a bright textured blob (and an empty last slice)."""
    rng = np.random.default_rng(seed)
    stack = rng.normal(100.0, 2.0, size=(n, *size)).astype(np.float32)
    yy, xx = np.mgrid[: size[0], : size[1]]
    for i in range(n - 1):
        blob = (yy - 30 - i) ** 2 / 14**2 + (xx - 36) ** 2 / 18**2 < 1
        stack[i][blob] += 300 + 80 * rng.random(blob.sum())
    return stack


def test_one_tile_is_exactly_the_plain_forward_softmax() -> None:
    model = LocalNet()
    x = np.random.default_rng(1).random((1, 40, 50), dtype=np.float32)
    probs = predict_slice_probabilities(model, x, WHOLE, CPU)
    assert probs.shape == (3, 40, 50) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, plain_softmax(model, x), atol=1e-6)


def test_tiles_agree_with_the_whole_slice_for_a_local_model() -> None:
    model = LocalNet()
    x = np.random.default_rng(2).random((1, 70, 90), dtype=np.float32)
    tiled = predict_slice_probabilities(
        model, x, PredictConfig(tile_size=24, overlap=0.3, batch_size=3), CPU
    )
    assert model.calls > 3  # really tiled, in batches
    np.testing.assert_allclose(tiled, plain_softmax(model, x), atol=1e-5)


def test_constant_model_gives_a_constant_output_without_seams() -> None:
    model = ConstantNet()
    x = np.random.default_rng(3).random((1, 101, 87), dtype=np.float32)
    probs = predict_slice_probabilities(model, x, PredictConfig(tile_size=16, overlap=0.4), CPU)
    expected = torch.softmax(model.logits.detach(), 0).numpy()
    np.testing.assert_allclose(
        probs, np.broadcast_to(expected[:, None, None], probs.shape), atol=1e-6
    )


@pytest.mark.parametrize("tile_size", [None, 24])
def test_mirroring_averages_the_four_mirror_images(tile_size: int | None) -> None:
    model = LocalNet()
    x = np.random.default_rng(4).random((1, 50, 70), dtype=np.float32)
    config = PredictConfig(
        tile_size=tile_size, crop_to_tissue=False, skip_empty_tiles=False, mirror=True
    )
    mirrored = predict_slice_probabilities(model, x, config, CPU)
    expected = np.mean(
        [
            np.flip(plain_softmax(model, np.ascontiguousarray(np.flip(x, axes))), axes)
            for axes in ((), (-1,), (-2,), (-2, -1))
        ],
        axis=0,
    )
    np.testing.assert_allclose(mirrored, expected, atol=1e-5)
    assert not np.allclose(mirrored, plain_softmax(model, x), atol=1e-3)  # it did something
    np.testing.assert_allclose(mirrored.sum(0), 1.0, atol=1e-5)


def test_mirroring_keeps_crop_and_skip_exact_where_tissue_is() -> None:
    stack = ct_like_stack()
    norm = Normalization.from_image(as_stack(stack))
    kwargs = {"normalization": norm, "class_ids": (0, 1, 2), "device": "cpu"}
    whole = PredictConfig(crop_to_tissue=False, skip_empty_tiles=False, mirror=True)
    plain = run_to_completion(predict_stack(LocalNet(), stack, config=whole, **kwargs))
    fast = run_to_completion(
        predict_stack(LocalNet(), stack, config=PredictConfig(mirror=True), **kwargs)
    )
    tissue = np.stack(
        [estimate_background(as_stack(stack)).tissue_mask(s) for s in as_stack(stack)]
    )
    inside = np.broadcast_to(tissue, plain.probabilities.shape)
    np.testing.assert_allclose(fast.probabilities[inside], plain.probabilities[inside], atol=1e-5)


def test_model_mode_is_restored() -> None:
    model = LocalNet()
    model.train()
    predict_slice_probabilities(model, np.zeros((1, 16, 16), np.float32), WHOLE, CPU)
    assert model.training


def test_tile_grid_weights_cover_every_pixel() -> None:
    total = np.zeros((50, 61), np.float32)
    for box, weight in tile_grid((50, 61), (16, 16), 0.25, halo=3):
        assert weight.shape == (16, 16)
        total[box] += weight
    assert total.min() > 0


def test_tile_size_follows_free_memory() -> None:
    assert choose_tile((512, 512), 1000.0, free_bytes=10**12, batch_size=4) == (512, 512)
    small = choose_tile((512, 512), 1000.0, free_bytes=10**8, batch_size=4, multiple=8)
    assert small[0] < 512 and small[0] % 8 == 0
    assert small[0] ** 2 * 1000 * 4 <= 0.5 * 10**8


def test_receptive_field_is_measured() -> None:
    assert receptive_field(LocalNet(), 1) == 5


class Saturated(nn.Module):
    """A confident network: logits so large that the softmax is exactly 0 or 1."""

    def __init__(self):
        super().__init__()
        self.net = LocalNet()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1e6 * self.net(x)


def test_an_ensemble_of_confident_networks_keeps_its_members_field() -> None:
    # The mean of saturated softmaxes has no gradient: measured through it, the field was 1
    # pixel, and a trained ensemble's prediction was cropped to the tissue with no context.
    ensemble = MemberMean([Saturated(), Saturated()])
    assert receptive_field(ensemble, 1) == 5


def test_background_and_tissue_box_come_from_the_data() -> None:
    stack = ct_like_stack()
    background = estimate_background(as_stack(stack))
    assert background.level[0] == pytest.approx(100.0, abs=1.0)
    mask = background.tissue_mask(as_stack(stack)[0])
    assert mask[30, 36] and not mask[2, 2]
    assert not background.tissue_mask(as_stack(stack)[-1]).any()  # noise alone is not tissue
    rows, cols = tissue_bounding_box(mask, margin=3)
    assert rows.start > 0 and cols.stop < stack.shape[2]


@pytest.mark.parametrize("tile_size", [None, 16])
def test_crop_and_skip_change_nothing_where_tissue_is(tile_size: int | None) -> None:
    stack = ct_like_stack()
    norm = Normalization.from_image(as_stack(stack))
    kwargs = {"normalization": norm, "class_ids": (0, 1, 2), "device": "cpu"}
    plain = run_to_completion(predict_stack(LocalNet(), stack, config=WHOLE, **kwargs))
    model = LocalNet()
    fast = run_to_completion(
        predict_stack(model, stack, config=PredictConfig(tile_size=tile_size), **kwargs)
    )
    tissue = np.stack(
        [estimate_background(as_stack(stack)).tissue_mask(s) for s in as_stack(stack)]
    )
    inside = np.broadcast_to(tissue, plain.probabilities.shape)
    np.testing.assert_allclose(fast.probabilities[inside], plain.probabilities[inside], atol=1e-5)
    np.testing.assert_array_equal(fast.labels[tissue], plain.labels[tissue])
    assert np.all(fast.probabilities[0, -1] == 1) and np.all(fast.labels[-1] == 0)


def test_empty_slices_cost_no_forward_pass() -> None:
    stack = ct_like_stack()
    stack[:-1] = stack[-1]  # no tissue anywhere
    model = LocalNet()
    norm = Normalization.from_image(as_stack(stack))
    result = run_to_completion(
        predict_stack(model, stack, normalization=norm, class_ids=(0, 1, 2), device="cpu")
    )
    assert model.calls == 0
    assert np.all(result.labels == 0) and np.all(result.probabilities[0] == 1)


def test_labels_hold_class_ids_and_context_slices_feed_channels() -> None:
    stack = ct_like_stack(n=3)
    norm = Normalization.from_image(as_stack(stack))
    result = run_to_completion(
        predict_stack(
            LocalNet(in_channels=3),
            stack,
            normalization=norm,
            class_ids=(0, 4, 7),
            context_slices=1,
            config=WHOLE,
            device="cpu",
        )  # fmt: skip
    )
    assert isinstance(result, Prediction)
    assert set(np.unique(result.labels)) <= {0, 4, 7}
    assert result.probabilities.shape == (3, 3, 64, 80)
    np.testing.assert_allclose(result.probabilities.sum(axis=0), 1.0, atol=1e-5)
    expected = np.asarray((0, 4, 7))[result.probabilities.argmax(axis=0)]
    np.testing.assert_array_equal(result.labels, expected)


def test_wrong_channels_are_a_clear_error() -> None:
    class Configured(LocalNet):
        config = type("Cfg", (), {"in_channels": 1, "num_classes": 3})()

    stack = ct_like_stack(n=2)
    norm = Normalization.from_image(as_stack(stack))
    run = predict_stack(
        Configured(), stack, normalization=norm, class_ids=(0, 1, 2), context_slices=1
    )
    with pytest.raises(ValueError, match="input channel"):
        next(run)


def test_memmap_outputs_in_out_dir(tmp_path) -> None:
    stack = ct_like_stack()
    on_disk = np.lib.format.open_memmap(tmp_path / "in.npy", "w+", np.float32, stack.shape)
    on_disk[:] = stack
    on_disk.flush()
    image = np.load(tmp_path / "in.npy", mmap_mode="r")
    norm = Normalization.from_image(as_stack(stack))
    kwargs = {"normalization": norm, "class_ids": (0, 1, 2), "device": "cpu"}
    in_memory = run_to_completion(predict_stack(LocalNet(), stack, **kwargs))
    mapped = run_to_completion(predict_stack(LocalNet(), image, out_dir=tmp_path / "out", **kwargs))
    assert isinstance(mapped.probabilities, np.memmap) and mapped.probabilities.dtype == np.float16
    assert isinstance(mapped.labels, np.memmap)
    np.testing.assert_allclose(mapped.probabilities, in_memory.probabilities, atol=2e-3)
    reread = np.load(tmp_path / "out" / "labels.npy")
    np.testing.assert_array_equal(reread, in_memory.labels)


def test_stopping_after_k_slices_and_choosing_slices(tmp_path) -> None:
    stack = ct_like_stack(n=5)
    norm = Normalization.from_image(as_stack(stack))
    model = LocalNet()
    model.train()
    run = predict_stack(
        model, stack, normalization=norm, class_ids=(0, 1, 2), device="cpu",
        out_dir=tmp_path, keep_probabilities=False,
    )  # fmt: skip
    records = [next(run), next(run)]
    run.close()  # the consumer stops
    assert all(isinstance(r, PredictProgress) for r in records)
    assert [r.slice_index for r in records] == [0, 1] and records[-1].total == 5
    assert model.training
    labels = np.load(tmp_path / "labels.npy")
    assert labels[:2].any() and not labels[2:].any()

    result = run_to_completion(
        predict_stack(model, stack, normalization=norm, class_ids=(0, 1, 2), slices=[3, 1])
    )
    assert result.slices == (3, 1)
    assert not result.labels[[0, 2, 4]].any() and result.labels[3].any()
    assert not result.probabilities[:, 0].any()


def test_predict_bundle_uses_the_checkpoint_settings() -> None:
    from napari_distill.core.config import ModelConfig
    from napari_distill.core.models import ModelBundle, UNet

    config = ModelConfig(in_channels=3, num_classes=3, base_channels=4, depth=2, context_slices=1)
    stack = ct_like_stack(n=3)
    bundle = ModelBundle(
        model=UNet(config), model_config=config, class_ids=(0, 2, 5), class_names={},
        normalization=Normalization.from_image(as_stack(stack)),
    )  # fmt: skip
    from napari_distill.core.inference import predict_bundle

    result = run_to_completion(predict_bundle(bundle, stack, device="cpu"))
    assert result.labels.shape == stack.shape and result.class_ids == (0, 2, 5)
