"""Files as users bring them (issue 30): negative label ids, NaN / Inf pixels, labels files
written by other software."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_distill.core import io
from napari_distill.core.training import prepare_pair


# ------------------------------------------------------------------ negative label ids
def _negative_labels() -> np.ndarray:
    labels = np.zeros((6, 16, 16), np.int16)
    labels[1, 2:6, 2:6] = 1
    labels[1, 8:10, 8:12] = -1  # 8 voxels
    labels[1, 12, 12:15] = -3  # 3 voxels
    return labels


def test_read_labels_refuses_negative_ids_naming_file_values_and_counts(tmp_path):
    path = tmp_path / "painted_in_fiji.tif"
    tifffile.imwrite(path, _negative_labels())
    with pytest.raises(io.ReadError) as error:
        io.read_labels(path)
    message = str(error.value)
    assert "painted_in_fiji.tif" in message
    assert "-3 (3 voxels), -1 (8 voxels)" in message
    assert "\n" not in message


def test_training_refuses_negative_ids_of_a_labels_layer():
    """The GUI hands a Labels layer's array to the core directly: the same refusal there."""
    image = np.random.default_rng(0).normal(100, 10, (6, 16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=r"negative ids -3 \(3 pixels\), -1 \(8 pixels\)"):
        prepare_pair(image, _negative_labels())
    unsigned = np.abs(_negative_labels()).astype(np.uint16)
    _, labels_stack, annotated = prepare_pair(image, unsigned)  # positive ids are fine
    assert annotated.tolist() == [1] and labels_stack.dtype == np.uint16
