"""Batch prediction: the in-process loop against Dask distributed with 1 and 2 workers.

    .venv/bin/python benchmarks/batch.py --json benchmarks/results/batch.json

Issue 28. **Data**: ``--volumes`` synthetic Medaka volumes of the sample's size
(``make_medaka(seed=k)``, 96 x 256 x 128 uint16, written as TIFFs with their voxel size;
``--seeds`` distinct specimens, repeated to make up the count) and one 4x volume (4 x 96
slices of the same section, ``make_medaka(shape=(384, 256, 128))``).

**Model**: a network of the default architecture (``ModelConfig()``: U-Net, 16 base channels,
depth 4, no context slices), untrained with a fixed seed, with the sample's normalisation.
Prediction time does not depend on the weights: every slice is cropped to its tissue and
tiles without tissue skipped from the image alone, so a trained student of the same
architecture costs the same (``run``'s student has its teacher's architecture).

**Runs, in one process, one after the other** (so a change in the machine's other load falls
on all of them about alike; ``--rounds`` repeats the whole sequence):

- ``in_process``: ``predict_volume`` over the volumes in this process, torch on 1 thread;
- ``dask_1``: ``predict --out-dir``'s ``run_batch`` on a ``LocalCluster`` of 1 worker process
  (1 torch thread);
- ``dask_2``: the same with 2 worker processes of 1 thread each;
- ``dask_1x2``: 1 worker process with 2 torch threads (the alternative to ``dask_2`` on 2
  cores).

Each Dask time runs from the submission of the batch to its last result, on a cluster
already started (its start, a few seconds, is reported apart). Ratios: the Dask overhead
``dask_1 / in_process`` and the scaling ``dask_1 / dask_2``.

**Memory**: a fresh 1-worker cluster predicts the sample-size volume, another the 4x one; the
worker's peak resident memory (``ru_maxrss``) after each, and its ratio. Whole volumes, then
the 4x volume cut into chunks of 96 slices (``chunk_slices``).

The load average is recorded at the start and end. Prints the JSON (``--json`` also saves it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

from napari_distill.core.batch import (
    VolumeOptions,
    local_cluster,
    output_paths,
    predict_volume,
    run_batch,
)
from napari_distill.core.config import ModelConfig
from napari_distill.core.io import write_image
from napari_distill.core.models import ModelBundle, build_model, save_checkpoint
from napari_distill.core.preprocess import Normalization, as_stack
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_medaka


def make_data(folder: Path, volumes: int, seeds: int) -> tuple[list[Path], Path, Path]:
    """The volumes, the 4x volume and the model's checkpoint, written into ``folder``."""
    paths = []
    for seed in range(seeds):
        sample = make_medaka(seed=seed)
        path = folder / f"medaka_{seed:02d}.tif"
        write_image(path, sample.image, sample.scale, unit="micrometer")
        paths.append(path)
    for index in range(seeds, volumes):
        paths.append(folder / f"medaka_{index:02d}.tif")
        shutil.copy(paths[index % seeds], paths[-1])
    big = make_medaka(shape=(4 * 96, 256, 128), seed=0)
    big_path = folder / "medaka_4x.tif"
    write_image(big_path, big.image, big.scale, unit="micrometer")
    torch.manual_seed(0)
    config = ModelConfig(num_classes=max(big.class_names) + 1)
    bundle = ModelBundle(
        model=build_model(config),
        model_config=config,
        class_ids=tuple(range(config.num_classes)),
        class_names=dict(big.class_names),
        normalization=Normalization.from_image(as_stack(big.image, rgb=False)),
        kind="student",
    )
    model = folder / "student.pt"
    save_checkpoint(model, bundle)
    return paths, big_path, model


def in_process(bundle: ModelBundle, volumes: list[Path], out: Path) -> float:
    out.mkdir()
    torch.set_num_threads(1)
    start = time.perf_counter()
    for volume, target in zip(volumes, output_paths(volumes, out), strict=True):
        predict_volume(bundle, volume, target, VolumeOptions())
    return time.perf_counter() - start


def on_dask(
    bundle: ModelBundle,
    checkpoint: bytes,
    volumes: list[Path],
    out: Path,
    workers: int,
    threads: int,
    chunk_slices: int | None = 0,
) -> dict[str, float]:
    from distributed import Client

    out.mkdir()
    started = time.perf_counter()
    with local_cluster(workers) as cluster, Client(cluster) as client:
        ready = time.perf_counter()
        batch = run_batch(
            client, bundle, checkpoint, volumes, output_paths(volumes, out), VolumeOptions(),
            chunk_slices=chunk_slices, threads=threads,
        )  # fmt: skip
        results = run_to_completion(batch)
        seconds = time.perf_counter() - ready
        peak = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    failed = [r.error for r in results if r.status != "done"]
    if failed:
        raise RuntimeError(f"volumes failed: {failed}")
    return {
        "seconds": seconds,
        "cluster_start_s": ready - started,
        "peak_rss_mb_per_worker": [kb / 1024 for kb in peak.values()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=4, help="distinct specimens")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.ERROR)
    load_start = os.getloadavg()
    folder = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    try:
        volumes, big, model = make_data(folder, args.volumes, args.seeds)
        checkpoint = model.read_bytes()
        from napari_distill.core.models import load_checkpoint

        bundle = load_checkpoint(model)[0]
        rounds: list[dict[str, Any]] = []
        for round_index in range(args.rounds):
            run = folder / f"round{round_index}"
            run.mkdir()
            times = {"in_process": {"seconds": in_process(bundle, volumes, run / "a")}}
            times["dask_1"] = on_dask(bundle, checkpoint, volumes, run / "b", 1, 1)
            times["dask_2"] = on_dask(bundle, checkpoint, volumes, run / "c", 2, 1)
            times["dask_1x2"] = on_dask(bundle, checkpoint, volumes, run / "d", 1, 2)
            times["identical_labels"] = all(
                np.array_equal(
                    tifffile.imread(run / "a" / p.name),
                    tifffile.imread(run / x / p.name),
                )
                for p in output_paths(volumes, run / "a")
                for x in ("b", "c", "d")
            )
            rounds.append(times)
            print(json.dumps(times, indent=1), flush=True)
        memory = {
            "sample": on_dask(bundle, checkpoint, volumes[:1], folder / "m1", 1, 1),
            "4x_whole": on_dask(bundle, checkpoint, [big], folder / "m4", 1, 1),
            "4x_chunks_of_96": on_dask(bundle, checkpoint, [big], folder / "m4c", 1, 1, 96),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def median(key: str) -> float:
        return statistics.median(r[key]["seconds"] for r in rounds)

    sample_rss = memory["sample"]["peak_rss_mb_per_worker"][0]
    result = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "load_average_start": load_start,
            "load_average_end": os.getloadavg(),
        },
        "volumes": args.volumes,
        "distinct_specimens": args.seeds,
        "volume_shape": [96, 256, 128],
        "rounds": rounds,
        "median_seconds": {k: median(k) for k in ("in_process", "dask_1", "dask_2", "dask_1x2")},
        "ratios": {
            "dask_overhead_dask1_over_in_process": median("dask_1") / median("in_process"),
            "scaling_dask1_over_dask2": median("dask_1") / median("dask_2"),
            "dask2_over_dask_1x2_threads": median("dask_2") / median("dask_1x2"),
        },
        "memory": memory,
        "peak_rss_ratio_4x_over_sample": {
            key: memory[key]["peak_rss_mb_per_worker"][0] / sample_rss
            for key in ("4x_whole", "4x_chunks_of_96")
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
