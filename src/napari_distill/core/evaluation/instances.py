"""From probabilities to labels: semantic clean-up (CT organs) and instances (cells).

- :func:`labels_from_probabilities`: argmax, mapped to class ids.
- :func:`clean_semantic` (with :func:`check_cleanup_classes` and :func:`describe_cleanup`):
  one piece per organ (largest 3D connected component of each class,
  or of the classes named: paired eyes and a column of vertebrae are several pieces) and
  removal of small objects, for CT stacks.
- :func:`split_instances`: touching objects of one mask split by a watershed on the distance
  transform, per 2D slice, with ids unique across the stack.
- :func:`instances_from_semantic` and :func:`apply_instance_config`: the above as
  :class:`~napari_distill.core.config.InstanceConfig` asks.
- :func:`cells_from_semantic`: cells and nuclei of a semantic cytoplasm / nucleus labelling as
  the cell format (docs/cells.md) holds them, one plane without overlaps: what a semantic
  model can say about cells, to be scored beside the overlap-aware cell model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from ..config import InstanceConfig
from ..preprocess import indices_to_labels

_MODES = ("semantic", "instances")


def labels_from_probabilities(probabilities: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """Label values (class ids) of the most probable class, for ``(K, ...)`` probabilities.

    A 4D ``(K, N, H, W)`` array (possibly memory-mapped) is read one slice at a time.
    """
    ids = tuple(int(c) for c in class_ids)
    if probabilities.shape[0] != len(ids):
        raise ValueError(
            f"probabilities have {probabilities.shape[0]} channels but {len(ids)} class ids "
            f"were given ({ids})"
        )
    if probabilities.ndim == 4:
        out = np.empty(probabilities.shape[1:], dtype=np.min_scalar_type(max(ids)))
        for index in range(probabilities.shape[1]):
            out[index] = indices_to_labels(np.argmax(probabilities[:, index], axis=0), ids)
        return out
    return indices_to_labels(np.argmax(probabilities, axis=0), ids)


def clean_semantic(
    labels: np.ndarray,
    keep_largest_component: bool = True,
    min_size: int = 0,
    largest_component_classes: Sequence[int] = (),
) -> np.ndarray:
    """Clean semantic labels class by class; removed voxels become background (0).

    Parameters
    ----------
    labels:
        ``(H, W)`` or ``(N, H, W)`` label values; components are connected in 2D or 3D
        accordingly (faces only, so that diagonal noise does not bridge organs).
    keep_largest_component:
        Keep only the largest connected component of a class (an organ is one piece).
    min_size:
        Remove components smaller than this many pixels / voxels (every class).
    largest_component_classes:
        The class ids ``keep_largest_component`` applies to; empty: every class. Name only
        the organs that are one body: it deletes all but one eye of a pair and all but one
        vertebra of a column.

    Returns
    -------
    np.ndarray
        A cleaned copy with the dtype of ``labels``.
    """
    out = np.array(labels, copy=True)
    one_piece = {int(c) for c in largest_component_classes}
    for class_id in np.unique(out):
        if class_id == 0:
            continue
        largest_only = keep_largest_component and (not one_piece or int(class_id) in one_piece)
        if not largest_only and min_size <= 1:
            continue
        mask = out == class_id
        components, count = ndimage.label(mask)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel(), minlength=count + 1)
        sizes[0] = 0
        keep = sizes >= max(min_size, 1)
        if largest_only:
            keep[:] = False
            largest = int(np.argmax(sizes))
            keep[largest] = sizes[largest] >= min_size
        out[mask & ~keep[components]] = 0
    return out


def check_cleanup_classes(cleanup: InstanceConfig, labels: np.ndarray) -> None:
    """Raise ``ValueError`` when ``cleanup`` keeps one piece of a class that no voxel of
    ``labels`` (the painted slices) has: a typo, found before anything is trained."""
    if not cleanup.keep_largest_component or not cleanup.largest_component_classes:
        return
    painted = {int(c) for c in np.unique(labels) if c != 0}
    unknown = sorted(set(cleanup.largest_component_classes) - painted)
    if unknown:
        raise ValueError(
            f"the clean-up names class {', '.join(map(str, unknown))}, which no painted slice "
            f"has (classes painted: {', '.join(map(str, sorted(painted)))})"
        )


def describe_cleanup(cleanup: InstanceConfig) -> str:
    """What a ``"semantic"`` clean-up does, in words (empty when it does nothing)."""
    parts = []
    if cleanup.keep_largest_component:
        named = ", ".join(map(str, cleanup.largest_component_classes)) or "every class"
        parts.append(f"largest piece of {named}")
    if cleanup.min_size > 1:
        parts.append(f"pieces under {cleanup.min_size} voxels removed")
    return "; ".join(parts)


def _split_plane(mask: np.ndarray, min_distance: int) -> tuple[np.ndarray, int]:
    """Watershed of one 2D mask on its distance transform: labels 1..count."""
    components, count = ndimage.label(mask)
    if count == 0:
        return components, 0
    distance = ndimage.distance_transform_edt(mask)
    peaks = peak_local_max(
        distance,
        min_distance=max(1, min_distance),
        labels=components,
        exclude_border=False,
    )
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # Plateaus give several adjacent peaks; merging peaks that touch keeps one seed per top.
    markers = ndimage.label(ndimage.binary_dilation(markers > 0) & mask)[0] * (markers > 0)
    instances = watershed(-distance, markers, mask=mask)
    # A component without a seed (too thin for a peak) stays one instance.
    missed = mask & (instances == 0)
    if missed.any():
        extra, _ = ndimage.label(missed)
        instances = np.where(missed, extra + instances.max(), instances)
    return _relabel(instances)


def _relabel(instances: np.ndarray) -> tuple[np.ndarray, int]:
    ids = np.unique(instances)
    ids = ids[ids != 0]
    lut = np.zeros(int(instances.max(initial=0)) + 1, dtype=np.int32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.int32)
    return lut[instances], int(ids.size)


def split_instances(mask: np.ndarray, min_distance: int = 3, min_size: int = 0) -> np.ndarray:
    """Split a foreground mask into instances (distance transform + watershed).

    Seeds are the maxima of the distance to the background (``peak_local_max`` at least
    ``min_distance`` pixels apart), so two touching round objects become two instances.

    Parameters
    ----------
    mask:
        ``(H, W)`` or ``(N, H, W)`` boolean foreground; a stack is split slice by slice.
    min_distance:
        Minimum distance between seeds in pixels (about the smallest object radius).
    min_size:
        Instances smaller than this many pixels are removed.

    Returns
    -------
    np.ndarray
        int32 instance ids, 0 for background, unique across the whole stack (consecutive).
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim not in (2, 3):
        raise ValueError(f"mask must be 2D or a stack of 2D slices, got shape {mask.shape}")
    planes = mask[np.newaxis] if mask.ndim == 2 else mask
    out = np.zeros(planes.shape, dtype=np.int32)
    next_id = 0
    for index, plane in enumerate(planes):
        instances, _ = _split_plane(plane, min_distance)
        if min_size > 1:
            # Sizes by bincount rather than skimage's remove_small_objects, whose size
            # parameter changed meaning in 0.26 (min_size -> max_size, < -> <=).
            sizes = np.bincount(instances.ravel())
            instances = np.where(sizes[instances] < min_size, 0, instances)
            instances, _ = _relabel(instances)
        count = int(instances.max(initial=0))
        out[index] = np.where(instances > 0, instances + next_id, 0)
        next_id += count
    return out[0] if mask.ndim == 2 else out


def instances_from_semantic(
    labels: np.ndarray,
    instance_classes: Sequence[int],
    config: InstanceConfig = InstanceConfig(),  # noqa: B008 - frozen, never mutated
) -> np.ndarray:
    """Instances of the classes ``instance_classes`` of semantic ``labels``.

    Each class is split separately (a nucleus and the cytoplasm around it stay distinct), and
    ids are unique across classes and slices; :func:`instance_class_map` recovers the class of
    every instance.

    Returns
    -------
    np.ndarray
        int32 instance ids, 0 for background and for classes not split.
    """
    out = np.zeros(labels.shape, dtype=np.int32)
    offset = 0
    for class_id in instance_classes:
        split = split_instances(labels == class_id, config.min_distance, config.min_size)
        inside = split > 0
        out[inside] = split[inside] + offset
        offset += int(split.max(initial=0))
    return out


def instance_class_map(instances: np.ndarray, labels: np.ndarray) -> dict[int, int]:
    """``{instance id: class id}``: the most frequent label under each instance."""
    inside = instances > 0
    pairs, counts = np.unique(
        np.stack([instances[inside], labels[inside].astype(np.int64)]), axis=1, return_counts=True
    )
    mapping: dict[int, int] = {}
    best: dict[int, int] = {}
    for (instance, class_id), count in zip(pairs.T, counts, strict=True):
        if count > best.get(int(instance), 0):
            best[int(instance)] = int(count)
            mapping[int(instance)] = int(class_id)
    return mapping


def apply_instance_config(labels: np.ndarray, config: InstanceConfig) -> np.ndarray:
    """Semantic labels post-processed as ``config.mode`` says.

    ``"semantic"`` cleans the labels (:func:`clean_semantic`); ``"instances"`` returns instance
    ids of ``config.instance_classes`` (all foreground classes when empty).
    """
    if config.mode not in _MODES:
        raise ValueError(f"InstanceConfig.mode must be one of {_MODES}, got {config.mode!r}")
    if config.mode == "semantic":
        if not config.keep_largest_component and config.min_size <= 0:
            return labels
        return clean_semantic(
            labels,
            config.keep_largest_component,
            config.min_size,
            config.largest_component_classes,
        )
    classes = config.instance_classes or tuple(int(c) for c in np.unique(labels) if c != 0)
    return instances_from_semantic(labels, classes, config)


def cells_from_semantic(
    labels: np.ndarray,
    cytoplasm_class: int,
    nucleus_class: int,
    config: InstanceConfig = InstanceConfig(),  # noqa: B008 - frozen, never mutated
) -> tuple[np.ndarray, np.ndarray]:
    """Cell planes and nucleus instances from semantic cytoplasm / nucleus labels.

    Nuclei are the instances of ``nucleus_class`` (:func:`split_instances` with
    ``config.min_distance`` and ``config.min_size``). Cells are the watershed pieces of the
    cytoplasm-or-nucleus mask seeded by those nuclei, flooded by distance from the nuclei: each
    cell takes its nucleus's id. A piece of the mask that holds no nucleus is one cell of its
    own (ids above every nucleus's). One label per pixel cannot hold two cells, so every cell
    lies in a single plane and overlapping cells are split between them.

    Parameters
    ----------
    labels:
        ``(H, W)`` or ``(N, H, W)`` class ids.
    cytoplasm_class, nucleus_class:
        The class ids of cytoplasm and nucleus.
    config:
        Seed distance and smallest nucleus (``mode`` and the classes are not read).

    Returns
    -------
    tuple of np.ndarray
        Cell planes ``(1, H, W)`` or ``(N, 1, H, W)`` and nuclei ``(H, W)`` or ``(N, H, W)``,
        int32, ids unique within a field.
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2D or a stack of 2D fields, got shape {labels.shape}")
    fields = labels[np.newaxis] if labels.ndim == 2 else labels
    nuclei = np.zeros(fields.shape, dtype=np.int32)
    cells = np.zeros(fields.shape, dtype=np.int32)
    for index, field_labels in enumerate(fields):
        seeds = split_instances(field_labels == nucleus_class, config.min_distance, config.min_size)
        mask = (field_labels == cytoplasm_class) | (seeds > 0)
        distance = ndimage.distance_transform_edt(seeds == 0)
        grown = watershed(distance, seeds, mask=mask)
        unseeded, _ = ndimage.label(mask & (grown == 0))
        nuclei[index] = seeds
        cells[index] = np.where(unseeded > 0, unseeded + seeds.max(initial=0), grown)
    if labels.ndim == 2:
        return cells, nuclei[0]  # the one field's axis is its one plane's
    return cells[:, np.newaxis], nuclei
