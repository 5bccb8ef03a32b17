"""Whether an image read from a file is a labels image: the rule the napari reader follows.

Files napari-distill wrote say what they are in their metadata. For any other file (Fiji,
napari's own writer, cellpose, a script's ``tifffile.imwrite``) the pixels and the name
decide. Labels are integer ids on flat patches (every pixel of an organ or a cell holds the
same id), with 0 for what is unlabelled, usually most of the image; an intensity image varies
from pixel to pixel (noise, texture, gradients) wherever it is not empty. So an image opens
as labels when, on a sample of it:

1. its pixels are integers (or booleans), one value per pixel (not RGB), none negative;
2. **it is flat where it is not 0**: of the pairs of side-by-side pixels that are both
   non-zero, at least :data:`FLAT_SHARE` (75%) are equal; and
3. **0 is its commonest value**, or **its name says labels**: a word of :data:`LABEL_WORDS`
   in the file or folder name (``embryo_mask.tif``, ``nuclei-labels.tif``, ``CellSeg.tif``),
   for labels whose background is not the largest class (a tissue mask, full labels).

Why not "few distinct values and 0 the commonest": an 8-bit image never has more than 256
values, and a dim fluorescence image is mostly 0, yet neither is flat (measured: 12-24% of
non-zero neighbours equal in a noisy 8-bit fluorescence image, 10-59% in 8-bit photographs,
3% in the bundled 16-bit CT, 98% in its sparse labels). Instance labels can hold thousands of
ids, so a count of ids says nothing either. Nor is a name enough alone:
``ct_for_segmentation.tif`` is an image, and it is not flat. 75% leaves room for many small
touching objects (cells 6 pixels wide touching on every side: 83% of pairs inside one cell)
while noise keeps an intensity image's equal neighbours far below it. A sample without two
neighbouring non-zero pixels counts as flat, so an all-0 integer image opens as labels, ready
to paint.

The sample is bounded (:data:`SAMPLE_SLICES` slices spread over a stack, whole rows spread
over each, about :data:`SAMPLE_VOXELS` pixels in all), so a huge memory-mapped or dask stack
is never read whole to decide.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from .common import ImageData

#: Words that, in a file or folder name, say it holds labels (compared lower-case, whole words).
LABEL_WORDS = frozenset(
    {
        "label", "labels", "labeled", "labelled", "labeling", "labelling",
        "mask", "masks", "seg", "segs", "segmented", "segmentation", "segmentations",
        "annotation", "annotations", "gt", "groundtruth", "truth",
    }
)  # fmt: skip

#: Share of side-by-side non-zero pixel pairs that must be equal for "flat" (see the module).
FLAT_SHARE = 0.75
#: Slices of a stack sampled, spread from the first to the last.
SAMPLE_SLICES = 64
#: Pixels sampled at most (whole rows, spread over each sampled slice).
SAMPLE_VOXELS = 2**21


def name_words(path: Path) -> list[str]:
    """Lower-case words of a file or folder name (``CellSeg_v2.tif`` -> cell, seg, v, tif)."""
    name = re.sub(r"([a-z])([A-Z])", r"\1 \2", path.name)  # camelCase: a word boundary
    return [word.lower() for word in re.split(r"[^A-Za-z]+", name) if word]


def name_says_labels(path: Path) -> bool:
    """Whether the file or folder name holds a word of :data:`LABEL_WORDS`."""
    return any(word in LABEL_WORDS for word in name_words(path))


def sample_rows(data: Any, spatial_ndim: int) -> np.ndarray:
    """Whole rows spread over (up to :data:`SAMPLE_SLICES` of) the slices: ``(rows, width)``.

    Reads at most about :data:`SAMPLE_VOXELS` pixels of a numpy, memory-mapped or dask array.
    """
    stack = data if spatial_ndim == 3 else data[np.newaxis]
    n_slices, height, width = stack.shape[:3]
    slices = np.unique(np.linspace(0, n_slices - 1, min(n_slices, SAMPLE_SLICES)).round())
    rows_per_slice = max(1, min(height, SAMPLE_VOXELS // (len(slices) * max(width, 1))))
    rows = np.unique(np.linspace(0, height - 1, rows_per_slice).round()).astype(int)
    return np.concatenate([np.asarray(stack[int(index)][rows]) for index in slices])


def values_look_like_labels(rows: np.ndarray) -> tuple[bool, bool]:
    """On sampled rows: whether 0 is the commonest value, and whether they are flat (test 2
    of the module's rule)."""
    values, counts = np.unique(rows, return_counts=True)
    zero = counts[values == 0]
    zero_commonest = bool(zero.size) and int(zero[0]) == int(counts.max())
    left, right = rows[:, :-1], rows[:, 1:]
    both = (left != 0) & (right != 0)
    pairs = int(np.count_nonzero(both))
    flat = pairs == 0 or np.count_nonzero(both & (left == right)) >= FLAT_SHARE * pairs
    return zero_commonest, bool(flat)


def looks_like_labels(image: ImageData) -> bool:
    """Whether ``image`` (read from a file without napari-distill's metadata) is labels, by
    the rule of this module's docstring."""
    dtype = np.dtype(image.data.dtype)
    if image.rgb or dtype.kind not in "biu" or 0 in image.data.shape:
        return False
    rows = sample_rows(image.data, image.spatial_ndim)
    if dtype.kind == "b":
        rows = rows.astype(np.uint8)
    if rows.min() < 0:
        return False  # not ids napari-distill can train on (read_labels refuses them)
    zero_commonest, flat = values_look_like_labels(rows)
    return flat and (zero_commonest or name_says_labels(image.path))
