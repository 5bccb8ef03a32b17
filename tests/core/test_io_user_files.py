"""Files as users bring them (issue 30): negative label ids, NaN / Inf pixels, labels files
written by other software."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import tifffile

from napari_distill.core import io
from napari_distill.core.io import read as io_read
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


# ------------------------------------------------------------------ NaN and infinite pixels
def _ct_with_holes() -> tuple[np.ndarray, np.ndarray]:
    """A float CT-like stack with NaN outside a field of view on slices 1 and 2, one +Inf and
    one -Inf on slice 4, slice 5 all NaN; and what reading it should give."""
    rng = np.random.default_rng(0)
    stack = rng.normal(1000.0, 50.0, (6, 20, 24)).astype(np.float32)
    expected = stack.copy()
    for index in (1, 2):
        stack[index, :, :5] = np.nan
        expected[index, :, :5] = stack[index, :, 5:].min()
    stack[4, 3, 3], stack[4, 7, 9] = np.inf, -np.inf
    expected[4, 3, 3] = expected[4, 7, 9] = np.delete(
        stack[4].ravel(), [3 * 24 + 3, 7 * 24 + 9]
    ).min()
    stack[5] = np.nan
    expected[5] = np.nanmin(np.where(np.isfinite(stack), stack, np.nan))  # the image's minimum
    return stack, expected


BAD_PIXELS = 2 * 20 * 5 + 2 + 20 * 24  # 682


@pytest.mark.parametrize(
    ("compression", "lazy", "kind"),
    [
        ("zlib", False, np.ndarray),  # read into memory: repaired in place
        (None, False, np.ndarray),  # memory-mapped, small: copied, the file untouched
        (None, True, da.Array),  # memory-mapped, large: repaired lazily
        ("zlib", True, da.Array),  # dask: repaired lazily
    ],
)
def test_non_finite_pixels_become_their_slices_minimum_with_a_warning(
    tmp_path, monkeypatch, compression, lazy, kind
):
    stack, expected = _ct_with_holes()
    path = tmp_path / "reconstruction.tif"
    tifffile.imwrite(path, stack, compression=compression)
    if lazy:
        monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)
    with pytest.warns(io.ReadWarning) as caught:
        image = io.read_image(path)
    # (a ResourceWarning of an earlier test's lazy file, collected now, may come along)
    [warning] = [w for w in caught if issubclass(w.category, io.ReadWarning)]
    message = str(warning.message)
    assert "reconstruction.tif" in message and f"holds {BAD_PIXELS} NaN or infinite" in message
    assert "in 4 of 6 slices" in message
    assert isinstance(image.data, kind) and not isinstance(image.data, np.memmap)
    np.testing.assert_array_equal(np.asarray(image.data), expected)
    on_disk = tifffile.imread(path)
    assert np.count_nonzero(~np.isfinite(on_disk)) == BAD_PIXELS  # the file is as it was


def test_a_2d_float_image_with_nan_and_an_all_nan_image(tmp_path):
    image = np.linspace(0.0, 1.0, 30 * 40, dtype=np.float64).reshape(30, 40)
    image[:4] = np.nan
    tifffile.imwrite(tmp_path / "field.tif", image)
    with pytest.warns(io.ReadWarning, match=r"field\.tif holds 160 NaN .* in the image"):
        read = io.read_image(tmp_path / "field.tif")
    assert np.isfinite(read.data).all() and read.data[0, 0] == image[4, 0]
    tifffile.imwrite(tmp_path / "empty.tif", np.full((6, 8, 8), np.nan, np.float32))
    with pytest.raises(io.ReadError, match=r"empty\.tif holds no finite value"):
        io.read_image(tmp_path / "empty.tif")


def test_finite_and_integer_images_are_read_untouched(tmp_path, recwarn):
    rng = np.random.default_rng(1)
    tifffile.imwrite(tmp_path / "f.tif", rng.normal(size=(6, 8, 8)).astype(np.float32))
    assert isinstance(io.read_image(tmp_path / "f.tif").data, np.memmap)  # still on disk
    tifffile.imwrite(tmp_path / "u.tif", rng.integers(0, 4000, (6, 8, 8), dtype=np.uint16))
    io.read_image(tmp_path / "u.tif")
    assert not [w for w in recwarn if issubclass(w.category, io.ReadWarning)]


def test_a_lazy_read_stays_here_whatever_dask_client_is_the_default(tmp_path, monkeypatch):
    """A Dask client the user made the default (here one of a cluster without workers, where
    any task would wait forever) does not receive a file's reading: its reductions run on this
    process's threads."""
    import threading

    from distributed import Client, LocalCluster

    stack, expected = _ct_with_holes()
    path = tmp_path / "reconstruction.tif"
    tifffile.imwrite(path, stack, compression="zlib")
    monkeypatch.setattr(io_read, "LAZY_THRESHOLD_BYTES", 100)
    read: list = []
    cluster = LocalCluster(n_workers=0, processes=False, dashboard_address=None)
    with cluster, Client(cluster):  # the default client from here on

        def work() -> None:
            with pytest.warns(io.ReadWarning):
                read.append(io.read_image(path))
            labels = np.zeros(stack.shape, np.uint8)
            io.write_labels(tmp_path / "labels.tif", da.from_array(labels, chunks=(2, 20, 24)))
            read.append(tmp_path / "labels.tif")

        reader = threading.Thread(target=work, daemon=True)
        reader.start()
        reader.join(timeout=60)
        assert not reader.is_alive(), "the read waited for the default client's workers"
    assert len(read) == 2 and read[1].exists()
    np.testing.assert_array_equal(np.asarray(read[0].data, dtype=np.float32), expected)
