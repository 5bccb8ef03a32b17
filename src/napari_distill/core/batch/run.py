"""A batch of volumes on a Dask distributed cluster: one task per volume, or per chunk of
slices for a volume larger than a worker's memory; a summary row per volume. Without a
cluster, the same per-volume function runs in this process, one volume after another.

Dask does the distribution (scheduling, moving results, retrying the tasks of a worker that
died); this module only submits the tasks and gathers the results as they complete. A failed
volume (unreadable, wrong channels) is a row with its error, and the others go on. The model
travels once, as a worker plugin (:class:`~.task.ModelPlugin`).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..inference import PredictProgress
from ..models import ModelBundle
from .task import (
    ModelPlugin,
    Volume,
    VolumeOptions,
    VolumeResult,
    background_task,
    chunk_task,
    finish_task,
    predict_volume_steps,
    volume_label,
    volume_name,
    volume_task,
)
from .volumes import chunk_slices_for_memory, plan_chunks, read_header

logger = logging.getLogger(__name__)

SUMMARY_FIELDS = (
    "volume", "output", "status", "shape", "seconds", "chunks", "classes_found",
    "voxels_per_class", "error",
)  # fmt: skip


@dataclass(frozen=True)
class BatchProgress:
    """A volume finished (done, skipped or failed): ``done`` of ``total``, its ``result``.

    In process, also a slice of the volume being predicted (``result`` None, ``slice`` that
    volume's :class:`~napari_distill.core.inference.PredictProgress`).
    """

    done: int
    total: int
    result: VolumeResult | None
    slice: PredictProgress | None = None

    def fraction(self, scale: int = 1000) -> tuple[int, int]:
        """``(done, total)`` in ``scale``-ths of a volume, the slices of the volume being
        predicted counted in (a progress bar that moves within a volume)."""
        within = 0.0
        if self.slice is not None and self.slice.total:
            within = self.slice.done / self.slice.total
        return round(scale * (self.done + within)), scale * self.total


def local_cluster(workers: int | None = None, **kwargs: Any) -> Any:
    """A ``LocalCluster`` of single-threaded worker processes, one per usable core unless
    ``workers`` says otherwise (each worker's torch uses one thread; see docs/benchmarks.md)."""
    from distributed import LocalCluster

    count = workers or len(os.sched_getaffinity(0))
    kwargs.setdefault("dashboard_address", ":0")
    kwargs.setdefault("silence_logs", logging.ERROR)
    return LocalCluster(n_workers=count, threads_per_worker=1, processes=True, **kwargs)


def dashboard_link(client: Any) -> str | None:
    """The cluster's dashboard address, when its scheduler runs one (it needs bokeh)."""
    services = client.scheduler_info().get("services", {})
    return client.dashboard_link if "dashboard" in services else None


def smallest_memory_limit(client: Any) -> int | None:
    """The smallest memory limit of the cluster's workers in bytes (None: no limit)."""
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    return min(limits) if limits and min(limits) > 0 else None


def run_batch(
    client: Any | None,
    bundle: ModelBundle,
    checkpoint: bytes | None,
    volumes: Sequence[Volume],
    outputs: Sequence[Path | None],
    options: VolumeOptions = VolumeOptions(),  # noqa: B008 - frozen, never mutated
    *,
    chunk_slices: int | None = None,
    threads: int | None = 1,
    prepare: Callable[[ModelBundle], ModelBundle] | None = None,
) -> Generator[BatchProgress, None, list[VolumeResult]]:
    """Predict every volume on the cluster behind ``client``; yield as each one ends.

    Parameters
    ----------
    client:
        A ``distributed.Client``; None predicts in this process with ``bundle``, one volume
        after another, whole, with the function a task runs
        (:func:`~.task.predict_volume_steps`), yielding each slice's progress too.
    bundle, checkpoint:
        The model (read here for its classes and context) and its file's bytes (sent to each
        worker once; unused in process).
    volumes, outputs:
        The inputs (paths, or :class:`~.task.VolumeSource` s; in process also
        :class:`~napari_distill.core.io.ImageData`) and the labels file each one writes
        (None in process: the result holds the prediction). A volume whose output exists is
        skipped unless ``options.overwrite``.
    chunk_slices:
        Slices per chunk; None cuts only volumes too large for a worker's memory
        (:func:`~.volumes.chunk_slices_for_memory`), 0 never cuts. A teacher with views
        always predicts whole volumes (its members slice the volume along all three axes).
    threads:
        torch's CPU threads on each worker.
    prepare:
        Turns the loaded checkpoint into the model that predicts, on each worker
        (:class:`~.task.ModelPlugin`); ``bundle`` is that model already.

    Returns
    -------
    list of VolumeResult
        One per volume, in the order of ``volumes``.
    """
    if client is None:
        return (yield from _run_in_process(bundle, volumes, outputs, options))
    from distributed import as_completed

    if checkpoint is None:
        raise ValueError("a batch on a cluster needs the checkpoint's bytes")
    plugin = ModelPlugin(checkpoint, threads, prepare)
    client.register_plugin(plugin)
    halo = bundle.model_config.context_slices
    can_cut = not bundle.model_config.views and chunk_slices != 0
    memory_limit = smallest_memory_limit(client)
    label_dtype = np.min_scalar_type(max(bundle.class_ids))
    results: list[VolumeResult | None] = [None] * len(volumes)
    pending: dict[Any, int] = {}
    ready: list[int] = []
    token = f"{os.getpid()}-{time.time_ns()}"
    # Outputs found here are skipped (or overwrite was asked for): what a task finds at its
    # output was written by an earlier attempt of that same task (a worker killed after its
    # write, retried by Dask), so the tasks may replace it.
    task_options = dataclasses.replace(options, overwrite=True)
    for index, (volume, out) in enumerate(zip(volumes, outputs, strict=True)):
        if _skipped(out, options):
            results[index] = VolumeResult(volume_label(volume), str(out), "skipped")
            ready.append(index)
            continue
        key = f"napari-distill-{index}-{volume_name(volume)}-{token}"
        try:
            # a file's header says whether it needs cutting; other sources are predicted whole
            header = read_header(Path(volume)) if can_cut and _is_path(volume) else None
        except (OSError, ValueError) as exc:  # tifffile's errors for an unreadable header
            results[index] = VolumeResult(
                volume_label(volume), str(out), "failed", error=_message(exc)
            )
            ready.append(index)
            continue
        per_chunk = None
        if header is not None:
            per_chunk = chunk_slices or chunk_slices_for_memory(header, memory_limit, halo)
        spans = plan_chunks(header.shape[0], per_chunk) if header is not None else [(0, 0)]
        if len(spans) == 1:
            where = str(volume) if _is_path(volume) else volume
            future = client.submit(
                volume_task, plugin.name, where, _text(out), task_options, key=key, pure=False
            )
        else:
            future = _submit_chunked(
                client, plugin.name, volume, out, task_options, header.shape[:3], label_dtype,
                spans, key,
            )  # fmt: skip
        pending[future] = index
    done = 0
    for index in ready:
        done += 1
        yield BatchProgress(done, len(volumes), results[index])
    # the client's own loop: it need not be dask's default client (the CLI's is not)
    for future in as_completed(list(pending), loop=client.loop):
        index = pending.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - one volume's failure, whatever it is, is
            # a row of the summary and the batch goes on
            result = _failed(volumes[index], outputs[index], exc)
        results[index] = result
        done += 1
        yield BatchProgress(done, len(volumes), result)
    return [r for r in results if r is not None]


def _run_in_process(
    bundle: ModelBundle,
    volumes: Sequence[Volume],
    outputs: Sequence[Path | None],
    options: VolumeOptions,
) -> Generator[BatchProgress, None, list[VolumeResult]]:
    """The batch in this process: each volume in turn, as a task would predict it."""
    results = []
    for index, (volume, out) in enumerate(zip(volumes, outputs, strict=True)):
        if _skipped(out, options):
            result = VolumeResult(volume_label(volume), str(out), "skipped")
        else:
            steps = predict_volume_steps(bundle, volume, out, options)
            try:
                while True:
                    record = next(steps)
                    yield BatchProgress(index, len(volumes), None, record)
            except StopIteration as stop:
                result = stop.value
            except Exception as exc:  # noqa: BLE001 - as on a cluster: one volume's failure
                # is its row, and the batch goes on
                result = _failed(volume, out, exc)
        results.append(result)
        yield BatchProgress(index + 1, len(volumes), result)
    return results


def _is_path(volume: Volume) -> bool:
    return isinstance(volume, str | os.PathLike)


def _skipped(out: Path | None, options: VolumeOptions) -> bool:
    return out is not None and out.exists() and not options.overwrite


def _text(out: Path | None) -> str:
    return "" if out is None else str(out)


def failed_volumes(results: Sequence[VolumeResult]) -> str:
    """The failed volumes with their errors, one per line ("" when none failed)."""
    return "\n".join(f"{r.volume}: {r.error}" for r in results if r.status == "failed")


def _submit_chunked(
    client: Any,
    plugin_name: str,
    volume: Path,
    out: Path,
    options: VolumeOptions,
    shape: tuple[int, ...],
    dtype: np.dtype,
    spans: list[tuple[int, int]],
    key: str,
) -> Any:
    """The tasks of a volume cut into chunks: its background, each chunk writing its slices
    of one ``.npy`` beside the output, and the task writing the TIFF from it."""
    part = out.parent / f".{out.name}.part.npy"
    np.lib.format.open_memmap(part, mode="w+", dtype=dtype, shape=shape).flush()
    started = time.time()
    background = client.submit(
        background_task, plugin_name, str(volume), options, key=f"{key}-background", pure=False
    )
    chunks = [
        client.submit(
            chunk_task,
            plugin_name,
            str(volume),
            start,
            stop,
            background,
            options,
            str(part),
            key=f"{key}-chunk-{start}",
            pure=False,
        )  # fmt: skip
        for start, stop in spans
    ]
    return client.submit(
        finish_task, plugin_name, str(volume), str(part), str(out), options, started, chunks,
        key=key, pure=False,
    )  # fmt: skip


# What the user can act on from the message alone: an unreadable or wrong file, a full disk,
# too little memory. Anything else is a fault of this tool, logged with its traceback.
_EXPECTED_FAILURES = (OSError, ValueError, MemoryError)


def _failed(volume: Volume, out: Path | None, exc: BaseException) -> VolumeResult:
    """The row of a volume whose prediction raised ``exc``; a traceback in the log unless the
    message says all (a cluster's exception carries its worker's traceback)."""
    label = volume_label(volume)
    if isinstance(exc, _EXPECTED_FAILURES):
        logger.debug("%s failed", label, exc_info=exc)
    else:
        logger.warning("%s failed: an error in napari-distill", label, exc_info=exc)
    return VolumeResult(label, _text(out), "failed", error=_message(exc))


def _message(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def write_summary(path: Path, results: Sequence[VolumeResult]) -> Path:
    """The batch's summary as CSV: a row per volume (``SUMMARY_FIELDS``).

    A volume skipped because its output existed keeps its row from the summary already at
    ``path`` (of the run that predicted it), so the file always describes every volume.
    """
    previous: dict[str, dict[str, str]] = {}
    if path.exists():
        with path.open(newline="") as handle:
            previous = {row["volume"]: row for row in csv.DictReader(handle)}
    rows = []
    for result in results:
        old = previous.get(result.volume)
        if result.status == "skipped" and old is not None and old.get("status") == "done":
            rows.append(old)
            continue
        rows.append(summary_row(result))
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)
    return path


def summary_row(result: VolumeResult) -> dict[str, str]:
    return {
        "volume": result.volume,
        "output": result.output,
        "status": result.status,
        "shape": "x".join(map(str, result.shape)),
        "seconds": f"{result.seconds:.2f}" if result.status == "done" else "",
        "chunks": str(result.chunks) if result.status == "done" else "",
        "classes_found": " ".join(map(str, result.classes_found)),
        "voxels_per_class": " ".join(f"{k}:{v}" for k, v in result.voxels.items()),
        "error": result.error,
    }
