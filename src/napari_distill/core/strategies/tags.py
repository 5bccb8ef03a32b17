"""Slice tags for the ``mixed`` strategy: an image-level, multi-label loss on the student branch.

A tag says which classes a slice contains (:func:`~napari_distill.core.io.read_tags_csv`);
every other foreground class is absent from it. Whether a class is present is a property of
the whole slice, not of a patch (a patch may miss a structure the slice holds), so each step
the student branch sees one whole tagged slice, and for each foreground class ``c``

    ``q_c = mean of the top-k probabilities of c over the slice``,  ``L = BCE(q_c, tag_c)``

pushes ``q_c`` up for present classes and down for absent ones.

Why top-k pooling, with ``k`` the share :attr:`MixedConfig.tag_top_share` of the pixels:
max pooling gives a gradient to one pixel per class and step (slow, and a single bright
pixel satisfies it), mean pooling asks a present class to fill the slice. The top ``k``
pixels are what a structure covering at least that share would light up; for an absent class
they are its most confident false positives, which is what should go down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..preprocess import Normalization, slice_input

EPSILON = 1e-6


def tag_vectors(classes: Sequence[int], class_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(present, tagged)`` over the channels of ``class_ids``: present 1 for the listed
    classes, 0 for the others; tagged True for every foreground channel (not the background,
    channel 0, which a tag never speaks about).

    Raises
    ------
    ValueError
        A listed class the model does not know.
    """
    ids = [int(c) for c in class_ids]
    unknown = sorted({int(c) for c in classes} - set(ids[1:]))
    if unknown:
        raise ValueError(
            f"the slice tags name classes {unknown} that no full mask has (known: {ids[1:]})"
        )
    present = np.array([1.0 if c in set(classes) else 0.0 for c in ids], np.float32)
    tagged = np.ones(len(ids), bool)
    tagged[0] = False
    return present, tagged


def tag_loss(
    logits: torch.Tensor,
    present: torch.Tensor,
    tagged: torch.Tensor,
    top_share: float,
) -> torch.Tensor:
    """Binary cross-entropy of the top-k pooled class probabilities against the tags.

    ``logits`` ``(B, K, H, W)``; ``present`` ``(B, K)`` 1 / 0; ``tagged`` ``(B, K)`` the
    entries that count (mean over them); ``k = max(1, round(top_share * H * W))``.
    """
    probabilities = torch.softmax(logits.float(), dim=1).flatten(2)
    k = max(1, min(probabilities.shape[-1], int(round(top_share * probabilities.shape[-1]))))
    pooled = probabilities.topk(k, dim=-1).values.mean(-1).clamp(EPSILON, 1.0 - EPSILON)
    per_class = F.binary_cross_entropy(pooled, present.float(), reduction="none")
    weight = tagged.to(per_class.dtype)
    if weight.sum() <= 0:
        return logits.sum() * 0.0
    return (per_class * weight).sum() / weight.sum()


class TagSource:
    """Whole tagged slices, normalised once, with their tag vectors; one per step."""

    def __init__(
        self,
        image_stack: np.ndarray,
        tags: Mapping[int, Sequence[int]],
        class_ids: Sequence[int],
        normalization: Normalization,
        context_slices: int = 0,
    ):
        if not tags:
            raise ValueError("no tagged slice")
        self.slice_indices = tuple(sorted(int(i) for i in tags))
        self._inputs = [
            slice_input(image_stack, i, normalization, context_slices) for i in self.slice_indices
        ]
        self._vectors = [tag_vectors(tags[i], class_ids) for i in self.slice_indices]

    def batch(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """``tag_x (1, C, H, W)``, ``tag_present (1, K)``, ``tag_known (1, K)``."""
        position = int(rng.integers(len(self.slice_indices)))
        present, tagged = self._vectors[position]
        return {
            "tag_x": torch.from_numpy(self._inputs[position][None].astype(np.float32)),
            "tag_present": torch.from_numpy(present[None]),
            "tag_known": torch.from_numpy(tagged[None]),
        }
