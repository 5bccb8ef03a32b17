"""OME-Zarr: reading lazily with the voxel size, labels into the image's container or a new one,
checked against the NGFF 0.5 schemas (ome-zarr-models) where they are installed."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import zarr

from napari_distill._reader import napari_get_reader
from napari_distill.core import io
from napari_distill.core.io import MICROMETER, ReadError


def _volume(shape=(4, 21, 18), seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 1000).astype(np.uint16)


@pytest.fixture
def container(tmp_path):
    return io.write_ngff_image(
        tmp_path / "fish.ome.zarr", _volume(), (3.0, 0.5, 0.5), unit=MICROMETER, levels=2
    )


def test_an_ome_zarr_image_is_read_lazily_with_its_scale_and_pyramid(container):
    image = io.read_image(container)
    assert isinstance(image.data, da.Array)
    np.testing.assert_array_equal(image.data.compute(), _volume())
    assert image.scale == (3.0, 0.5, 0.5)
    assert image.unit == MICROMETER
    assert [level.shape for level in image.levels] == [(4, 11, 9)]
    assert io.can_read(container)
    assert io.read_any(container)[0] == "image"


def test_the_scale_comes_from_the_coordinate_transformations_in_their_unit(tmp_path):
    path = io.write_ngff_image(tmp_path / "a.zarr", _volume(), (2.0, 0.25, 0.25), unit="millimeter")
    image = io.read_image(path)
    assert image.scale == pytest.approx((2000.0, 250.0, 250.0))  # micrometres
    assert image.unit == MICROMETER
    unknown = io.write_ngff_image(tmp_path / "b.zarr", _volume(), (2.0, 0.25, 0.25))
    assert io.read_image(unknown).scale == (2.0, 0.25, 0.25)
    assert io.read_image(unknown).unit is None


def test_labels_go_into_the_image_container_with_its_scale_and_round_trip(container):
    labels = (_volume() > 500).astype(np.uint8) * 3
    group = io.write_labels(container, labels)  # no scale given: the image's is used
    assert group == container / "labels" / io.LABELS_NAME
    assert io.ngff_labels(container) == [group]
    kind, read = io.read_any(group)
    assert kind == "labels"
    np.testing.assert_array_equal(np.asarray(read.data), labels)
    assert read.scale == (3.0, 0.5, 0.5)
    assert read.unit == MICROMETER
    # one level per image level (the spec asks for as many), by nearest neighbour
    np.testing.assert_array_equal(np.asarray(read.levels[0]), labels[:, ::2, ::2])
    with pytest.raises(FileExistsError):
        io.write_labels(container, labels)
    io.write_labels(container, labels // 3, overwrite=True)
    assert int(np.asarray(io.read_any(group)[1].data).max()) == 1
    assert io.ngff_labels(container) == [group]  # listed once
    assert not [p for p in group.parent.iterdir() if p.name.startswith(".")]  # no leftovers


def test_labels_of_another_shape_are_refused(container):
    with pytest.raises(ValueError, match="shape"):
        io.write_labels(container, np.zeros((4, 5, 5), np.uint8))


def test_labels_alone_make_a_new_container(tmp_path):
    labels = np.zeros((3, 6, 7), np.uint16)
    labels[1, 2:4, 3:5] = 300
    path = io.write_labels(tmp_path / "out.ome.zarr", labels, (2.0, 1.0, 1.0), unit=MICROMETER)
    kind, read = io.read_any(path)
    assert kind == "labels"
    assert read.data.dtype == np.uint16
    np.testing.assert_array_equal(np.asarray(read.data), labels)
    assert read.scale == (2.0, 1.0, 1.0)
    meta = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    assert meta["version"] == "0.5"
    assert meta["multiscales"][0]["axes"][0] == {"name": "z", "type": "space", "unit": MICROMETER}


def test_a_colour_image_and_a_2d_image(tmp_path):
    rgb = (np.random.default_rng(1).random((12, 10, 3)) * 255).astype(np.uint8)
    image = io.read_image(io.write_ngff_image(tmp_path / "rgb.zarr", rgb, (0.3, 0.3), rgb=True))
    assert image.rgb
    np.testing.assert_array_equal(np.asarray(image.data), rgb)
    grey = io.read_image(io.write_ngff_image(tmp_path / "g.zarr", rgb[..., 0]))
    assert grey.data.shape == (12, 10) and grey.scale == (1.0, 1.0)


def test_ngff_0_4_on_zarr_v2_is_read(tmp_path):
    path = tmp_path / "old.zarr"
    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=_volume(), chunks=(2, 21, 18))
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [4, 1, 1]}]}
            ],
        }
    ]
    image = io.read_image(path)
    assert image.scale == (4.0, 1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(image.data), _volume())


def test_what_napari_distill_does_not_read_is_refused_or_declined(tmp_path):
    group = zarr.open_group(str(tmp_path / "t.zarr"), mode="w", zarr_format=3)
    group.create_array("0", data=np.zeros((3, 2, 4, 4), np.uint8))
    axes = [{"name": "t", "type": "time"}] + [{"name": a, "type": "space"} for a in "zyx"]
    group.attrs["ome"] = {
        "version": "0.5",
        "multiscales": [{"axes": axes, "datasets": [{"path": "0"}]}],
    }
    with pytest.raises(ReadError, match="time points"):
        io.read_image(tmp_path / "t.zarr")
    plain = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    plain.create_array("x", data=np.zeros(3))
    assert not io.can_read(tmp_path / "plain.zarr")  # a zarr that is no OME image


def test_the_written_containers_follow_the_ngff_schemas(container, tmp_path):
    models = pytest.importorskip("ome_zarr_models.v05")
    io.write_labels(container, (_volume() > 500).astype(np.uint8))
    models.Image.from_zarr(zarr.open_group(str(container), mode="r"))
    alone = io.write_labels(tmp_path / "alone.zarr", np.ones((2, 3, 3), np.uint8))
    models.ImageLabel.from_zarr(zarr.open_group(str(alone), mode="r"))


def test_the_reader_opens_the_image_as_a_lazy_multiscale_layer_with_its_labels(container):
    labels = (_volume() > 500).astype(np.uint8)
    io.write_labels(container, labels)
    reader = napari_get_reader(str(container))
    assert callable(reader)
    [(image, image_kwargs, image_type), (mask, mask_kwargs, mask_type)] = reader(str(container))
    assert image_type == "image" and mask_type == "labels"
    assert image_kwargs["multiscale"] and mask_kwargs["multiscale"]
    assert [level.shape for level in image] == [(4, 21, 18), (4, 11, 9)]
    assert all(isinstance(level, da.Array) for level in (*image, *mask))
    assert image_kwargs["scale"] == mask_kwargs["scale"] == (3.0, 0.5, 0.5)
    assert image_kwargs["name"] == "fish"
    np.testing.assert_array_equal(np.asarray(mask[0]), labels)
