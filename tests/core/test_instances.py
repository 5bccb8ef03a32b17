"""Probabilities to labels and instances on tiny synthetic masks."""

from __future__ import annotations

import numpy as np
import pytest

from napari_distill.core.config import InstanceConfig
from napari_distill.core.evaluation.instances import (
    apply_instance_config,
    cells_from_semantic,
    check_cleanup_classes,
    clean_semantic,
    describe_cleanup,
    instance_class_map,
    instances_from_semantic,
    labels_from_probabilities,
    split_instances,
)


def two_touching_discs(shape: tuple[int, int] = (40, 60)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    left = (yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2
    right = (yy - 20) ** 2 + (xx - 38) ** 2 <= 10**2
    return left | right


def test_labels_from_probabilities_maps_channels_to_class_ids() -> None:
    probs = np.zeros((3, 2, 2), np.float32)
    probs[0, 0, 0] = probs[1, 0, 1] = probs[2, 1, :] = 1
    assert labels_from_probabilities(probs, (0, 5, 9)).tolist() == [[0, 5], [9, 9]]
    stacked = np.stack([probs, probs], axis=1)  # (K, N, H, W)
    assert labels_from_probabilities(stacked, (0, 5, 9)).shape == (2, 2, 2)
    with pytest.raises(ValueError, match="class ids"):
        labels_from_probabilities(probs, (0, 1))


def test_clean_semantic_keeps_the_largest_3d_component_per_class() -> None:
    labels = np.zeros((3, 10, 10), np.uint8)
    labels[:, 2:6, 2:6] = 1  # 48 voxels
    labels[1, 8, 8] = 1  # stray voxel of class 1
    labels[0, 8:10, 0:3] = 2  # 6 voxels
    cleaned = clean_semantic(labels)
    assert cleaned[1, 8, 8] == 0 and cleaned[1, 3, 3] == 1 and (cleaned == 2).sum() == 6
    assert cleaned.dtype == labels.dtype
    sized = clean_semantic(labels, keep_largest_component=False, min_size=10)
    assert (sized == 2).sum() == 0 and (sized == 1).sum() == 48


def test_largest_component_only_for_the_classes_named() -> None:
    """A pair of eyes (class 2) survives when only the one-body organ (class 1) is cleaned."""
    labels = np.zeros((4, 12, 12), np.uint8)
    labels[:, 1:5, 1:5] = 1  # the organ
    labels[2, 10, 10] = 1  # a stray piece of it
    labels[:, 8:11, 1:4] = 2  # left eye
    labels[:, 1:4, 8:11] = 2  # right eye, as large
    everything = clean_semantic(labels)
    assert (everything == 2).sum() == 36  # one eye deleted: why classes can be named
    named = clean_semantic(labels, largest_component_classes=(1,))
    assert (named == 2).sum() == 72 and named[2, 10, 10] == 0 and (named == 1).sum() == 64
    config = InstanceConfig(keep_largest_component=True, largest_component_classes=(1,))
    assert np.array_equal(apply_instance_config(labels, config), named)
    # the classes named do nothing unless the largest piece is asked for
    untouched = InstanceConfig(largest_component_classes=(1,))
    assert apply_instance_config(labels, untouched) is labels


def test_a_cleanup_is_described_and_checked_against_the_painted_classes() -> None:
    assert describe_cleanup(InstanceConfig()) == ""
    both = InstanceConfig(keep_largest_component=True, largest_component_classes=(4, 6), min_size=9)
    assert describe_cleanup(both) == "largest piece of 4, 6; pieces under 9 voxels removed"
    every = InstanceConfig(keep_largest_component=True)
    assert describe_cleanup(every) == "largest piece of every class"
    painted = np.zeros((2, 4, 4), np.uint8)
    painted[0, :2] = 4
    painted[1, 2:] = 6
    check_cleanup_classes(both, painted)  # both painted: nothing to say
    with pytest.raises(
        ValueError, match=r"class 6, which no painted slice has \(classes painted: 4\)"
    ):
        check_cleanup_classes(both, np.where(painted == 6, 0, painted))


def test_two_touching_discs_become_two_instances() -> None:
    instances = split_instances(two_touching_discs(), min_distance=5)
    ids = np.unique(instances)
    assert ids.tolist() == [0, 1, 2]
    assert instances[20, 14] != instances[20, 44]
    assert (instances > 0).sum() == two_touching_discs().sum()


def test_instance_ids_are_unique_across_slices() -> None:
    stack = np.stack([two_touching_discs(), two_touching_discs()])
    instances = split_instances(stack, min_distance=5)
    assert set(np.unique(instances[0])) - {0} == {1, 2}
    assert set(np.unique(instances[1])) - {0} == {3, 4}


def test_small_instances_are_removed() -> None:
    mask = two_touching_discs()
    mask[0:2, 55:57] = True  # 4 pixels
    instances = split_instances(mask, min_distance=5, min_size=10)
    assert instances[0, 55] == 0 and instances.max() == 2


def test_instances_from_semantic_keeps_classes_apart() -> None:
    labels = np.where(two_touching_discs(), 2, 0).astype(np.uint8)
    labels[0:5, 0:5] = 1
    instances = instances_from_semantic(labels, (1, 2), InstanceConfig(min_distance=5))
    assert instances.max() == 3
    assert instance_class_map(instances, labels) == {1: 1, 2: 2, 3: 2}
    assert np.array_equal(
        apply_instance_config(labels, InstanceConfig(mode="instances", min_distance=5)), instances
    )
    with pytest.raises(ValueError, match="mode"):
        apply_instance_config(labels, InstanceConfig(mode="cells"))


def test_cells_from_semantic_grows_each_nucleus_into_its_cell() -> None:
    labels = two_touching_discs().astype(np.uint8)  # cytoplasm 1: two touching cells
    labels[18:23, 18:23] = labels[18:23, 36:41] = 2  # a nucleus in each
    labels[2:6, 52:58] = 1  # a piece of cytoplasm without a nucleus
    cells, nuclei = cells_from_semantic(labels, cytoplasm_class=1, nucleus_class=2)
    assert cells.shape == (1, *labels.shape) and nuclei.shape == labels.shape
    assert sorted(np.unique(nuclei).tolist()) == [0, 1, 2]
    plane = cells[0]
    assert np.array_equal(plane > 0, labels > 0)  # every foreground pixel in one cell
    left, right = nuclei[20, 20], nuclei[20, 38]
    assert plane[20, 12] == left and plane[20, 46] == right  # each cell has its nucleus's id
    assert plane[20, 25] == left and plane[20, 33] == right  # the split runs between them
    lone = np.unique(plane[2:6, 52:58])
    assert lone.size == 1 and lone[0] not in (0, left, right)  # its own cell, a new id
    stacked_cells, stacked_nuclei = cells_from_semantic(np.stack([labels, labels]), 1, 2)
    assert stacked_cells.shape == (2, 1, *labels.shape)
    assert np.array_equal(stacked_cells[1], cells) and np.array_equal(stacked_nuclei[0], nuclei)
    with pytest.raises(ValueError, match="2D or a stack"):
        cells_from_semantic(labels[0], 1, 2)
