"""``export-model``: a bioimage.io package that bioimageio.spec's validator accepts and that
bioimageio.core runs to the labels ``predict`` gives, with the network switched off.

A tiny 2.5D teacher (one network, one context slice each side) is trained a few steps once.
"""

from __future__ import annotations

import socket
import sys
import zipfile

import numpy as np
import pytest
import tifffile
import torch

from napari_distill.cli import main
from napari_distill.core.config import ModelConfig
from napari_distill.core.export import ExportError, check_exportable, export_bioimageio
from napari_distill.core.io import read_labels
from napari_distill.core.models import ModelBundle, load_checkpoint
from napari_distill.core.models.networks import build_model
from napari_distill.core.preprocess import Normalization
from synthetic import fixed_disk_square_volume

spec = pytest.importorskip("bioimageio.spec")
core = pytest.importorskip("bioimageio.core")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No connection can be opened, and bioimageio's cache is this test's own folder."""

    def refuse(*args, **kwargs):
        raise OSError("the network is off in these tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(spec.settings, "cache_path", tmp_path / "bioimageio-cache")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    image, truth = fixed_disk_square_volume(n=8, size=64, seed=2)
    sparse = np.zeros_like(truth)
    sparse[[0, 4, 7]] = truth[[0, 4, 7]]
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "sparse.tif", sparse)
    train = ["train-teacher", "--image", str(folder / "image.tif"), "--labels"]
    train += [str(folder / "sparse.tif"), "--out", str(folder / "teacher.pt"), "--steps", "15"]
    train += ["--base-channels", "4", "--depth", "2", "--patch-size", "32", "--context-slices"]
    train += ["1", "--no-views", "--no-plan", "--no-deep-supervision", "--device", "cpu"]
    assert main([*train, "--quiet"]) == 0
    return folder


def read_test_input(package):
    with zipfile.ZipFile(package) as archive, archive.open("test_input.npy") as handle:
        return np.load(handle)


def labels_of(model, raw, class_ids):
    sample = core.predict(model=model, inputs={"raw": raw})
    probabilities = np.asarray(sample.members["probabilities"].data)
    return np.asarray(class_ids)[probabilities[0].argmax(axis=0)]


def test_the_package_validates_and_reproduces_predict(files, tmp_path):
    out = tmp_path / "teacher.zip"
    argv = ["export-model", "--model", str(files / "teacher.pt"), "--out", str(out)]
    assert main([*argv, "--image", str(files / "image.tif"), "--author", "A. Tester"]) == 0
    assert main([*argv, "--quiet"]) != 0  # never replaced unasked
    names = set(zipfile.ZipFile(out).namelist())
    assert {"rdf.yaml", "README.md", "weights.pt", "test_input.npy", "test_output.npy"} <= names

    model = spec.load_description(out, perform_io_checks=True)
    assert model.validation_summary.status == "valid-format", model.validation_summary
    assert "2302.12562" in str(model.cite[0].url)
    summary = core.test_model(model)  # runs the test input, compares with the test output
    assert summary.status == "passed", [d.errors for d in summary.details]

    # predict on the test input's slices gives the labels bioimageio.core gives
    raw = read_test_input(out)
    assert raw.shape == (1, 3, 64, 64)  # the slice and one neighbour on each side
    bundle = load_checkpoint(files / "teacher.pt")[0]
    tifffile.imwrite(tmp_path / "crop.tif", raw[0], photometric="minisblack")  # 3 slices
    predicted = tmp_path / "crop_labels.tif"
    command = ["predict", "--model", str(files / "teacher.pt"), "--image"]
    command.append(str(tmp_path / "crop.tif"))
    assert main([*command, "--out", str(predicted), "--no-crop", "--device", "cpu"]) == 0
    expected = read_labels(predicted).data[1]  # the middle slice: the one with both neighbours
    assert len(np.unique(expected)) > 1
    np.testing.assert_array_equal(labels_of(model, raw, bundle.class_ids), expected)


def _untrained(**config) -> ModelBundle:
    torch.manual_seed(3)
    model_config = ModelConfig(in_channels=3, num_classes=3, base_channels=4, depth=2, **config)
    return ModelBundle(
        model=build_model(model_config).eval(),
        model_config=model_config,
        class_ids=(0, 2, 5),
        class_names={2: "eye lens", 5: "5th"},
        normalization=Normalization((10.0, 20.0, 30.0), (200.0, 220.0, 250.0), clip=True),
        kind="student",
    )


def test_an_rgb_ensemble_exports_its_mean_probabilities(tmp_path):
    """Two members (the mean of their softmax) on the bundled Pap smear sample, clipped
    normalisation per colour; class ids that are not 0..K-1."""
    bundle = _untrained(members=2)
    out = export_bioimageio(bundle, tmp_path / "ensemble.zip")
    model = spec.load_description(out, perform_io_checks=True)
    assert model.validation_summary.status == "valid-format", model.validation_summary
    assert [str(c) for c in model.outputs[0].axes[1].channel_names] == [
        "background", "eye_lens", "class5",
    ]  # fmt: skip
    raw = read_test_input(out)
    low = np.asarray([10.0, 20.0, 30.0], np.float32).reshape(1, 3, 1, 1)
    high = np.asarray([200.0, 220.0, 250.0], np.float32).reshape(1, 3, 1, 1)
    normalised = np.clip((raw - low) * (np.float32(1) / (high - low)), 0, 1)
    members = bundle.model.members
    with torch.no_grad():
        mean = sum(torch.softmax(m(torch.from_numpy(normalised)), 1) for m in members) / 2
    expected = np.asarray((0, 2, 5))[mean[0].numpy().argmax(axis=0)]
    np.testing.assert_array_equal(labels_of(model, raw, (0, 2, 5)), expected)


def test_what_cannot_be_exported_says_why_in_one_line(tmp_path, monkeypatch):
    views = _untrained(members=3, views=True, context_slices=0)
    with pytest.raises(ExportError, match="three axes"):
        check_exportable(views)
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # as if not installed
    with pytest.raises(ExportError, match=r"pip install 'napari-distill\[export\]'"):
        export_bioimageio(_untrained(), tmp_path / "m.zip")
