"""``napari-distill propagate`` end to end on a tiny volume made in the test.

The labels (and probabilities) are written with the image's voxel size, the
leave-one-painted-slice-out estimate is logged, and the ways a user can get it wrong end with
exit code 2 and one line on stderr, before any work and without touching existing files.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.io import read_labels, read_probabilities, write_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """image.tif (voxels 2 x 0.5 x 0.5 um), truth.tif and sparse.tif (slices 0, 3, 6)."""
    folder = tmp_path_factory.mktemp("propagate")
    rows, cols = np.mgrid[:32, :40]
    truth = np.zeros((7, 32, 40), np.uint8)
    for i in range(7):
        truth[i][(rows - 16) ** 2 + (cols - 10 - 2 * i) ** 2 < 36] = 1
        truth[i][2:6, 30:38] = 2
    rng = np.random.default_rng(0)
    image = 1000 + 400 * (truth == 1) + 200 * (truth == 2) + rng.normal(0, 5, truth.shape)
    paths = {name: folder / f"{name}.tif" for name in ("image", "truth", "sparse", "wrong")}
    write_image(paths["image"], image.astype(np.uint16), (2.0, 0.5, 0.5), unit="micrometer")
    tifffile.imwrite(paths["truth"], truth)
    sparse = np.zeros_like(truth)
    sparse[[0, 3, 6]] = truth[[0, 3, 6]]
    tifffile.imwrite(paths["sparse"], sparse)
    tifffile.imwrite(paths["wrong"], sparse[:, :16])
    return paths


def command(files, out, *extra: str) -> list[str]:
    return ["propagate", "--image", str(files["image"]), "--labels", str(files["sparse"])] + [
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


def run_failing(argv: list[str], capsys) -> str:
    """Run ``argv``, expect exit code 2 and return the one-line error message."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("napari-distill propagate: error: ")
    return lines[0]


@pytest.mark.parametrize("method", ["nearest", "flow"])
def test_propagate_writes_labels_and_logs_the_leave_one_out_estimate(
    files, tmp_path, caplog, method
):
    out, probabilities = tmp_path / "labels.tif", tmp_path / "probabilities.tif"
    caplog.set_level(logging.INFO)
    argv = command(files, out, "--method", method, "--probabilities", str(probabilities))
    assert main(argv) == 0
    labels = read_labels(out)
    truth = tifffile.imread(files["truth"])
    assert labels.data.shape == truth.shape
    assert labels.scale == pytest.approx((2.0, 0.5, 0.5))  # the image's voxel size
    np.testing.assert_array_equal(labels.data[[0, 3, 6]], truth[[0, 3, 6]])
    agreement = (labels.data == truth).mean()
    assert agreement > (0.99 if method == "flow" else 0.9)
    probs = read_probabilities(probabilities)
    assert probs.data.shape == (3, *truth.shape) and probs.class_ids == (0, 1, 2)
    assert "propagation, leave-one-painted-slice-out: mIoU " in caplog.text
    assert "over 3 slices" in caplog.text


def test_propagate_refuses_to_replace_an_output_without_overwrite(files, tmp_path, capsys):
    out = tmp_path / "exists.tif"
    out.write_bytes(b"the user's file")
    message = run_failing(command(files, out), capsys)
    assert "--overwrite" in message and out.read_bytes() == b"the user's file"
    probabilities = tmp_path / "probabilities.tif"
    probabilities.write_bytes(b"another file")
    fresh = tmp_path / "fresh.tif"
    message = run_failing(command(files, fresh, "--probabilities", str(probabilities)), capsys)
    assert "--overwrite" in message and not fresh.exists()
    assert main([*command(files, out, "--method", "nearest"), "--overwrite"]) == 0
    assert read_labels(out).data.shape == (7, 32, 40)


def test_propagate_refuses_labels_of_another_shape_and_bad_names(files, tmp_path, capsys):
    out = tmp_path / "labels.tif"
    argv = command(files, out)
    argv[argv.index("--labels") + 1] = str(files["wrong"])
    message = run_failing(argv, capsys)
    assert "has shape (7, 16, 40) but the image" in message and not out.exists()
    message = run_failing(command(files, tmp_path / "labels.png"), capsys)
    assert "--out" in message and ".tif" in message
    with pytest.raises(SystemExit):  # argparse refuses an unknown method itself
        main(command(files, out, "--method", "copy"))
    assert not out.exists()
