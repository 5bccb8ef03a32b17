"""``napari-distill run --strategy mixed|mutual``: the two contracts end to end on a tiny stack."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

import napari_distill.cli.distill  # noqa: F401  (registers run and distill)
import napari_distill.cli.predict  # noqa: F401  (registers predict)
from napari_distill.cli import main
from napari_distill.core.models import load_checkpoint
from napari_distill.core.samples import corrupt_labels, simulate_points, simulate_scribbles

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weak")
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:32, :32]
    truth = np.zeros((6, 32, 32), np.uint8)
    for i in range(6):
        truth[i][(rows - 12 - i) ** 2 + (cols - 14) ** 2 < 40] = 1
        truth[i][20:28, 4:10] = 2
    image = rng.normal(100, 5, truth.shape) + 80 * (truth == 1) + 40 * (truth == 2)
    full = np.zeros_like(truth)
    full[[1, 4]] = truth[[1, 4]]
    tifffile.imwrite(folder / "image.tif", image.astype(np.uint16))
    tifffile.imwrite(folder / "full.tif", full)
    tifffile.imwrite(folder / "weak.tif", simulate_scribbles(truth, [0, 2, 3, 5], length=8))
    points = simulate_points(truth, [0, 2, 3, 5])
    np.savetxt(folder / "points.csv", points, fmt="%d", delimiter=",",
               header="slice,y,x,class", comments="")  # fmt: skip
    (folder / "tags.csv").write_text("slice,classes\n0,1 2\n2,1;2\n3,1 2\n5,1 2\n")
    tifffile.imwrite(folder / "noisy.tif", corrupt_labels(truth, 0.3, seed=1))
    return folder


def _run(files, out, *extra):
    return main([
        "run", "--image", str(files / "image.tif"), "--out-dir", str(out), "--steps", "3",
        "--device", "cpu", "--quiet", *extra,
    ])  # fmt: skip


@pytest.mark.parametrize("weak", ["weak.tif", "points.csv", "tags.csv"])
def test_run_mixed_writes_both_branches(files, tmp_path, weak):
    out = tmp_path / "mixed"
    code = _run(
        files, out, "--labels", str(files / "full.tif"), "--weak-labels", str(files / weak),
        "--strategy", "mixed",
    )  # fmt: skip
    assert code == 0
    for name in ("teacher_labels.tif", "student_labels.tif", "student.pt", "report.md"):
        assert (out / name).is_file(), name
    assert tifffile.imread(out / "teacher_labels.tif").shape == (6, 32, 32)
    assert set(np.unique(tifffile.imread(out / "student_labels.tif"))) <= {0, 1, 2}
    student, _ = load_checkpoint(out / "student.pt", kind="student")
    assert student.extra["strategy"] == "mixed"
    report = (out / "report.md").read_text()
    if weak == "tags.csv":  # recognised by its columns: tags, not points
        assert "slice tags on 4 slice(s)" in report and "weak labels (none)" in report
    else:
        assert student.extra["accepted_slices"] == [0, 2, 3, 5]  # the weakly labelled slices
        assert "weak labels" in report
    # predict with the checkpoint: the student branch, as student_labels.tif
    labels = tmp_path / "again.tif"
    argv = ["predict", "--model", str(out / "student.pt"), "--image", str(files / "image.tif")]
    assert main([*argv, "--out", str(labels), "--device", "cpu", "--quiet"]) == 0
    np.testing.assert_array_equal(
        tifffile.imread(labels), tifffile.imread(out / "student_labels.tif")
    )
    if weak == "weak.tif":  # on Dask workers too, which load the two-branch network themselves
        batch = tmp_path / "batch"
        argv = ["predict", "--model", str(out / "student.pt"), "--image", str(files / "image.tif")]
        assert main([*argv, "--out-dir", str(batch), "--workers", "1", "--quiet"]) == 0
        np.testing.assert_array_equal(
            tifffile.imread(batch / "image_labels.tif"),
            tifffile.imread(out / "student_labels.tif"),
        )


def test_run_mutual_writes_the_control_and_the_pair(files, tmp_path):
    out = tmp_path / "mutual"
    code = _run(
        files, out, "--labels", str(files / "noisy.tif"), "--strategy", "mutual",
        "--noise-rate", "0.3",
    )  # fmt: skip
    assert code == 0
    teacher, _ = load_checkpoint(out / "teacher.pt", kind="teacher")
    student, _ = load_checkpoint(out / "student.pt", kind="student")
    assert teacher.model_config.members == 1 and student.model_config.members == 2
    assert student.extra["strategy"] == "mutual"
    assert student.extra["strategy_config"]["noise_rate"] == 0.3
    for name in ("teacher_labels.tif", "student_labels.tif"):
        assert tifffile.imread(out / name).shape == (6, 32, 32)
    assert _run(files, out, "--labels", str(files / "noisy.tif"), "--strategy", "mutual") == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "mixed"], "needs --weak-labels"),
        (["--strategy", "mutual", "--weak-labels", "w.tif"], "is for --strategy mixed"),
        (["--noise-rate", "0.2"], "is for --strategy mutual"),
        (["--strategy", "mutual", "--noise-rate", "1.5"], "noise_rate"),
    ],
)
def test_run_refuses_flags_the_strategy_would_ignore(files, tmp_path, capsys, extra, message):
    code = _run(files, tmp_path / "x", "--labels", str(files / "noisy.tif"), *extra)
    assert code == 2 and message in capsys.readouterr().err
