"""The nucleus-guided cell model: pairing, windows, training steps, prediction, checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_distill.core.inference.cells import (
    fields_as_input,
    nuclei_from_probabilities,
    predict_cells,
)
from napari_distill.core.io.cells import check_planes, pack_planes
from napari_distill.core.models.cells import (
    CellModelConfig,
    crop_windows,
    load_cell_model,
)
from napari_distill.core.progress import run_to_completion
from napari_distill.core.training.cells import (
    CellTrainConfig,
    CellTrainingRun,
    SupervisedCellObjective,
    new_cell_model,
)
from napari_distill.core.training.cells_data import (
    measure_geometry,
    pair_cells_with_nuclei,
    prepare_cell_data,
)


def _disk(centre, radius, shape=(64, 64)):
    yy, xx = np.indices(shape)
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def _field():
    """Two overlapping cells whose nuclei both lie in the overlap, and a free nucleus."""
    a, b = _disk((30, 24), 14), _disk((30, 40), 14)
    planes = pack_planes([a, b], ids=[5, 9], dtype=np.uint16)
    nuclei = np.zeros((64, 64), np.uint16)
    nuclei[_disk((30, 29), 2)] = 1  # nearer a's centre
    nuclei[_disk((30, 35), 2)] = 2  # nearer b's centre
    nuclei[_disk((55, 55), 2)] = 3  # no cell
    image = np.full((64, 64), 220.0)
    image[a | b] = 150
    image[nuclei > 0] = 40
    return image, planes, nuclei


def test_nuclei_in_an_overlap_pair_with_the_nearest_cell_and_free_nuclei_stay_free():
    _, planes, nuclei = _field()
    assert pair_cells_with_nuclei(planes, nuclei) == {1: 5, 2: 9, 3: 0}


def test_windows_mark_this_nucleus_and_the_others():
    image, _, nuclei = _field()
    field = torch.from_numpy(fields_as_input(image[None])[0])
    crops = crop_windows(
        field,
        torch.from_numpy(nuclei.astype(np.int64)),
        np.array([[30, 29]]),
        np.array([1]),
        32,
        16,
    )
    assert crops.shape == (1, 3, 16, 16)
    assert crops[0, 1].sum() > 0 and crops[0, 2].sum() > 0  # this nucleus; nucleus 2 nearby


def test_watershed_splits_touching_nuclei_along_the_rim():
    probs = np.zeros((3, 20, 30))
    probs[0] = 1
    for cx in (8, 20):
        inside = _disk((10, cx), 4, (20, 30))
        probs[:, inside] = [[0], [1], [0]]
    probs[:, 8:13, 13:16] = np.array([0, 0, 1])[:, None, None]  # a rim bridging them
    labels = nuclei_from_probabilities(probs, min_area=4)
    assert labels.max() == 2


@pytest.mark.parametrize("rgb", [False, True])
def test_a_few_steps_train_and_predict_cell_planes_for_grey_and_rgb(rgb, tmp_path):
    image, planes, nuclei = _field()
    stack = np.stack([image, image[::-1]])
    if rgb:
        stack = np.repeat(stack[..., None], 3, axis=-1) * np.array([1.0, 0.9, 0.8])
    fields = fields_as_input(stack, rgb=rgb)
    all_planes = np.stack([planes, planes[:, ::-1]])
    all_nuclei = np.stack([nuclei, nuclei[::-1]])
    data = prepare_cell_data(fields, all_planes, all_nuclei, [0, 1])
    config = measure_geometry(
        data, CellModelConfig(in_channels=fields.shape[1], width=4, depth=2, crop_size=16)
    )
    assert config.window >= 2 * 14
    train = CellTrainConfig(steps=3, patch_size=32, nucleus_batch=2, cell_batch=2)
    run = CellTrainingRun(
        new_cell_model(config, 0), SupervisedCellObjective(data, config, train), train
    )
    records = list(run.steps())
    assert [r.step for r in records] == [1, 2, 3]
    cells, found = run_to_completion(predict_cells(run.model, stack, rgb=rgb))
    assert cells.ndim == 4 and cells.shape[0] == 2 and cells.shape[2:] == (64, 64)
    assert found.shape == (2, 64, 64)
    check_planes(cells)
    model, step, extra = load_cell_model(run.save(tmp_path / "cells.pt"))
    assert step == 3 and model.config == config and len(extra["loss"]) == 3
