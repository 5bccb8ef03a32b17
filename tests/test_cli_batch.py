"""``predict --out-dir``: a batch of tiny volumes on a 2-worker Dask ``LocalCluster``
(processes), against the same volumes predicted in this process.

A tiny 2.5D teacher (one network, `--no-views`; one context slice on each side, so a chunk's
halo matters) is trained a few steps once. The cluster is started once for the module and
reached with ``--scheduler``; one test starts the command's own local cluster.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import pickle
import shutil
import signal

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.batch import (
    ModelPlugin,
    VolumeOptions,
    list_volumes,
    local_cluster,
    output_paths,
    plan_chunks,
    predict_chunk,
    predict_volume,
    run_batch,
    volume_background,
)
from napari_distill.core.inference import predict_bundle
from napari_distill.core.io import read_image, read_labels
from napari_distill.core.models import load_checkpoint
from napari_distill.core.progress import run_to_completion
from synthetic import fixed_disk_square_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCALE = (2.0, 0.5, 0.5)


def write_volume(path, n, seed):
    image, _ = fixed_disk_square_volume(n=n, size=32, seed=seed)
    tifffile.imwrite(
        path,
        image,
        imagej=True,
        resolution=(1 / SCALE[1], 1 / SCALE[2]),
        metadata={"spacing": SCALE[0], "unit": "um"},
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """vols/ with three volumes of 7, 8 and 9 slices, and teacher.pt (context_slices=1)."""
    folder = tmp_path_factory.mktemp("batch")
    volumes = folder / "vols"
    volumes.mkdir()
    for seed, n in enumerate((7, 8, 9)):
        write_volume(volumes / f"fish_{seed}.tif", n, seed)
    image, truth = fixed_disk_square_volume(n=8, size=32, seed=5)
    sparse = np.zeros_like(truth)
    sparse[[0, 4, 7]] = truth[[0, 4, 7]]
    tifffile.imwrite(folder / "image.tif", image)
    tifffile.imwrite(folder / "sparse.tif", sparse)
    train = ["train-teacher", "--image", str(folder / "image.tif"), "--labels"]
    train += [str(folder / "sparse.tif"), "--out", str(folder / "teacher.pt"), "--steps", "15"]
    train += ["--base-channels", "4", "--depth", "2", "--patch-size", "32", "--context-slices"]
    train += ["1", "--no-views", "--no-deep-supervision", "--device", "cpu", "--quiet"]
    assert main(train) == 0
    return folder


@pytest.fixture(scope="module")
def bundle(files):
    return load_checkpoint(files / "teacher.pt")[0]


@pytest.fixture(scope="module")
def expected(files, bundle):
    """Each volume's labels predicted whole, in this process."""
    labels = {}
    for path in sorted((files / "vols").glob("*.tif")):
        image = read_image(path).data
        prediction = run_to_completion(
            predict_bundle(bundle, image, device="cpu", keep_probabilities=False)
        )
        labels[path.stem] = np.asarray(prediction.labels)
    assert all(len(np.unique(v)) > 1 for v in labels.values())  # not one class everywhere
    return labels


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(2) as cluster:
        yield cluster


def rows(summary):
    with open(summary, newline="") as handle:
        return {os.path.basename(r["volume"]): r for r in csv.DictReader(handle)}


def predict_argv(files, image, out, *extra):
    return ["predict", "--model", str(files / "teacher.pt"), "--image", str(image)] + [
        "--out-dir", str(out), "--device", "cpu", "--quiet", *extra,
    ]  # fmt: skip


# --------------------------------------------------------------------------- chunk == whole
def test_chunks_with_their_halo_equal_the_whole_volume(files, bundle, expected):
    volume = files / "vols" / "fish_2.tif"
    options = VolumeOptions()
    background = volume_background(bundle, volume, options)
    spans = plan_chunks(9, 2)
    assert spans == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]
    chunked = np.concatenate(
        [predict_chunk(bundle, volume, a, b, background, options) for a, b in spans]
    )
    np.testing.assert_array_equal(chunked, expected["fish_2"])
    # The test can fail: without the halo (each chunk alone), edge slices lose their context.
    alone = []
    for a, b in spans:
        image = read_image(volume).data[a:b]
        prediction = run_to_completion(
            predict_bundle(bundle, image, device="cpu", keep_probabilities=False)
        )
        alone.append(np.asarray(prediction.labels))
    assert not np.array_equal(np.concatenate(alone), expected["fish_2"])


def test_a_views_teacher_predicts_whole_volumes_even_when_asked_for_chunks(
    files, cluster, tmp_path
):
    """The plan turns views on for volumes: such a teacher predicts along three axes, which a
    chunk of slices cannot give, so it is never cut and its labels are the whole prediction."""
    train = ["train-teacher", "--image", str(files / "image.tif"), "--labels"]
    train += [str(files / "sparse.tif"), "--out", str(tmp_path / "views.pt"), "--steps", "3"]
    train += ["--base-channels", "4", "--depth", "2", "--patch-size", "32", "--views"]
    train += ["--no-deep-supervision", "--device", "cpu", "--quiet"]
    assert main(train) == 0
    views = load_checkpoint(tmp_path / "views.pt")[0]
    assert views.model_config.views
    volume = files / "vols" / "fish_1.tif"
    whole = run_to_completion(
        predict_bundle(views, read_image(volume).data, device="cpu", keep_probabilities=False)
    )
    argv = ["predict", "--model", str(tmp_path / "views.pt"), "--image", str(volume)]
    argv += ["--out-dir", str(tmp_path / "out"), "--device", "cpu", "--quiet"]
    argv += ["--scheduler", cluster.scheduler_address, "--chunk-slices", "2"]
    assert main(argv) == 0
    assert rows(tmp_path / "out" / "summary.csv")["fish_1.tif"]["chunks"] == "1"
    written = read_labels(tmp_path / "out" / "fish_1_labels.tif").data
    np.testing.assert_array_equal(written, whole.labels)


def _as_student(bundle):
    return dataclasses.replace(bundle, kind="prepared")


def test_the_worker_plugin_prepares_the_model_it_loads(files):
    """A checkpoint whose strategy chooses what predicts (a ``mixed`` student's branch) is
    turned into that model on each worker, as the command line does in process."""
    plugin = ModelPlugin((files / "teacher.pt").read_bytes(), threads=None, prepare=_as_student)
    plugin.setup(worker=None)
    assert plugin.bundle.kind == "prepared"
    assert pickle.loads(pickle.dumps(plugin)).prepare is _as_student  # travels by name
    plain = ModelPlugin((files / "teacher.pt").read_bytes(), threads=None)
    plain.setup(worker=None)
    assert plain.bundle.kind == "teacher"


def test_volume_list_and_output_names(files, tmp_path):
    listing = tmp_path / "volumes.txt"
    listing.write_text(f"# two volumes\n{files}/vols/fish_1.tif\n\n{files}/vols/fish_0.tif\n")
    volumes = list_volumes(str(listing))
    assert [v.name for v in volumes] == ["fish_1.tif", "fish_0.tif"]
    assert [v.name for v in list_volumes(str(files / "vols" / "fish_*.tif"))] == [
        "fish_0.tif", "fish_1.tif", "fish_2.tif",
    ]  # fmt: skip
    assert [p.name for p in output_paths(volumes, tmp_path)] == [
        "fish_1_labels.tif", "fish_0_labels.tif",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="both write"):
        output_paths([tmp_path / "a" / "x.tif", tmp_path / "b" / "x.tif"], tmp_path)


# ---------------------------------------------------------------------------- on the cluster
def test_folder_on_the_cluster_equals_predicting_in_process(files, expected, cluster, tmp_path):
    """Whole volumes on the cluster, and again cut into chunks of 3 slices."""
    address = cluster.scheduler_address
    out = tmp_path / "out"
    assert main(predict_argv(files, files / "vols", out, "--scheduler", address)) == 0
    chunked = tmp_path / "chunked"
    argv = predict_argv(files, files / "vols", chunked, "--scheduler", address)
    assert main([*argv, "--chunk-slices", "3"]) == 0
    for folder, chunks in ((out, "1"), (chunked, "3")):
        summary = rows(folder / "summary.csv")
        assert set(summary) == {"fish_0.tif", "fish_1.tif", "fish_2.tif"}
        for stem, labels in expected.items():
            written = read_labels(folder / f"{stem}_labels.tif")
            np.testing.assert_array_equal(written.data, labels)
            assert written.scale == pytest.approx(SCALE)
            row = summary[f"{stem}.tif"]
            assert row["status"] == "done" and row["error"] == ""
            assert row["shape"] == "x".join(map(str, labels.shape))
            assert row["chunks"] == chunks
            voxels = dict(item.split(":") for item in row["voxels_per_class"].split())
            assert {int(k): int(v) for k, v in voxels.items()} == {
                c: int((labels == c).sum()) for c in (0, 1, 2)
            }
    assert not list(chunked.glob(".*part*"))  # the chunks' scratch file is gone


def test_without_a_cluster_the_batch_runs_the_same_function_here(files, bundle, expected, tmp_path):
    """No client: each volume in turn in this process (the per-volume function of a task),
    with each slice's progress; a failed volume is a row and the rest go on; a rerun skips."""
    volumes = list_volumes(str(files / "vols"))
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    volumes.insert(1, broken)
    outputs = output_paths(volumes, tmp_path / "out")
    (tmp_path / "out").mkdir()
    records = []
    batch = run_batch(None, bundle, None, volumes, outputs, VolumeOptions())
    results = run_to_completion(batch, records.append)
    assert [r.status for r in results] == ["done", "failed", "done", "done"]
    assert "not a TIFF" in results[1].error and results[0].chunks == 1
    for volume, out in zip(volumes, outputs, strict=True):
        if volume != broken:
            np.testing.assert_array_equal(read_labels(out).data, expected[volume.stem])
    assert [r.done for r in records if r.result is not None] == [1, 2, 3, 4]
    within = [r for r in records if r.slice is not None]
    assert len(within) == 7 + 8 + 9  # a record per slice of each volume
    fractions = [r.fraction()[0] for r in records]
    assert fractions == sorted(fractions) and fractions[-1] == records[-1].fraction()[1]
    again = run_to_completion(run_batch(None, bundle, None, volumes, outputs, VolumeOptions()))
    assert [r.status for r in again] == ["skipped", "failed", "skipped", "skipped"]


def test_a_fault_of_the_tool_is_logged_with_its_traceback(
    files, bundle, tmp_path, monkeypatch, caplog
):
    """A wrong file's message says all; an error of the tool itself (here a bug stood in by
    a ZeroDivisionError) is still one volume's row, and its traceback goes to the log."""
    import napari_distill.core.batch.run as batch_run

    volumes = list_volumes(str(files / "vols"))[:2]
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff at all")
    real = batch_run.predict_volume_steps

    def faulty(bundle, volume, out, options):
        if volume == volumes[1]:  # as a generator would: at its first step
            raise ZeroDivisionError("division by zero")
        return (yield from real(bundle, volume, out, options))

    monkeypatch.setattr(batch_run, "predict_volume_steps", faulty)
    volumes.append(broken)
    outputs = output_paths(volumes, tmp_path / "out")
    (tmp_path / "out").mkdir()
    with caplog.at_level("DEBUG", logger="napari_distill.core.batch"):
        results = run_to_completion(
            run_batch(None, bundle, None, volumes, outputs, VolumeOptions())
        )
    assert [r.status for r in results] == ["done", "failed", "failed"]
    assert results[1].error == "ZeroDivisionError: division by zero"
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and volumes[1].name in warned[0].getMessage()
    assert warned[0].exc_info is not None and warned[0].exc_info[0] is ZeroDivisionError
    quiet = [r for r in caplog.records if r.levelname == "DEBUG" and "broken" in r.getMessage()]
    assert quiet and quiet[0].exc_info is not None  # the wrong file: its traceback in debug only


def test_bad_volume_is_reported_the_rest_done_and_a_rerun_skips(files, cluster, tmp_path, capsys):
    volumes = tmp_path / "vols"
    shutil.copytree(files / "vols", volumes)
    (volumes / "broken.tif").write_bytes(b"not a tiff at all")
    rgb = np.zeros((4, 32, 32, 3), np.uint8)  # readable, but not the teacher's one channel
    tifffile.imwrite(volumes / "colour.tif", rgb, photometric="rgb")
    out = tmp_path / "out"
    argv = predict_argv(files, volumes, out, "--scheduler", cluster.scheduler_address)
    assert main(argv) == 2
    assert "2 of 5 volumes failed" in capsys.readouterr().err
    summary = rows(out / "summary.csv")
    assert summary["broken.tif"]["status"] == "failed"
    assert "not a TIFF" in summary["broken.tif"]["error"]
    assert summary["colour.tif"]["status"] == "failed"
    assert "channel" in summary["colour.tif"]["error"]
    assert {summary[f"fish_{i}.tif"]["status"] for i in range(3)} == {"done"}
    # A rerun skips what is done (and keeps its rows), tries the failed ones again.
    (volumes / "broken.tif").unlink()
    (volumes / "colour.tif").unlink()
    done = out / "fish_0_labels.tif"
    stamp = done.stat().st_mtime_ns
    assert main(argv) == 0
    assert done.stat().st_mtime_ns == stamp
    again = rows(out / "summary.csv")
    assert {r["status"] for r in again.values()} == {"done"}
    assert again["fish_0.tif"]["seconds"] == summary["fish_0.tif"]["seconds"]
    assert main([*argv, "--overwrite"]) == 0
    assert done.stat().st_mtime_ns != stamp


def test_a_killed_worker_s_volumes_are_done_by_dask(files, bundle, expected, cluster, tmp_path):
    """SIGKILL a worker with a volume in hand after the first volume ends: Dask runs its
    tasks again elsewhere (or on the worker its nanny starts) and every volume is done."""
    from distributed import Client

    volumes = []
    for copy in range(4):
        for path in sorted((files / "vols").glob("*.tif")):
            volumes.append(tmp_path / f"{path.stem}_copy{copy}.tif")
            shutil.copy(path, volumes[-1])
    outputs = output_paths(volumes, tmp_path / "out")
    (tmp_path / "out").mkdir()
    checkpoint = (files / "teacher.pt").read_bytes()
    killed = []
    with Client(cluster.scheduler_address) as client:
        pids = client.run(os.getpid)
        batch = run_batch(client, bundle, checkpoint, volumes, outputs, VolumeOptions())
        try:
            while True:
                record = next(batch)
                if not killed:
                    busy = [w for w, keys in client.processing().items() if keys]
                    assert busy, "every volume ended before a worker could be killed"
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                assert record.result.status == "done", record.result.error
        except StopIteration as stop:
            results = stop.value
    assert killed and len(results) == len(volumes)
    for volume, out in zip(volumes, outputs, strict=True):
        stem = volume.stem.rsplit("_copy", 1)[0]
        np.testing.assert_array_equal(read_labels(out).data, expected[stem])


def test_default_local_cluster_and_one_volume_in_process(files, bundle, expected, tmp_path):
    """The command's own cluster (1 worker) from a glob; the in-process function agrees."""
    out = tmp_path / "out"
    pattern = files / "vols" / "fish_1*.tif"
    assert main(predict_argv(files, pattern, out, "--workers", "1")) == 0
    np.testing.assert_array_equal(read_labels(out / "fish_1_labels.tif").data, expected["fish_1"])
    result = predict_volume(
        bundle, files / "vols" / "fish_1.tif", tmp_path / "here.tif", VolumeOptions()
    )
    assert result.status == "done" and result.classes_found
    np.testing.assert_array_equal(read_labels(tmp_path / "here.tif").data, expected["fish_1"])


def test_the_commands_cluster_is_never_the_default_client(monkeypatch):
    """dask's own computations during a batch (a lazy file read here) stay in this process:
    the command's client is not made the default, which other code would pick up."""
    import argparse

    from distributed import default_client

    from napari_distill.cli.batch import cluster_client

    args = argparse.Namespace(scheduler=None, workers=1, threads=None)
    with cluster_client(args) as client:
        assert client is not None and client.status == "running"
        with pytest.raises(ValueError, match="No clients found"):
            default_client()


def test_batch_options_that_write_one_file_are_refused(files, tmp_path, capsys):
    argv = predict_argv(files, files / "vols", tmp_path / "o", "--probabilities", "p.tif")
    assert main(argv) == 2
    assert "--probabilities writes one file" in capsys.readouterr().err
