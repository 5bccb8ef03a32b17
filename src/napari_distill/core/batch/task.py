"""The work of one volume, or of one chunk of its slices, wherever it runs.

The functions here take the model (a :class:`ModelBundle`) as an argument, so the in-process
loop and the Dask tasks run the same code. On a Dask worker the model comes from
:class:`ModelPlugin`, registered once per worker (and on any worker that joins later, such as
the one a nanny starts after a worker was killed): tasks carry only paths and settings.

A chunk is ``[start, stop)`` of the volume's slices, read with ``halo`` slices on each side
(the model's ``context_slices``: a 2D network that sees ``c`` neighbouring slices on each side
needs exactly those) and predicted with the whole volume's background model, so its labels are
those of the whole volume's prediction.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..allocator import retained_freed_memory
from ..config import InstanceConfig, PredictConfig
from ..evaluation import apply_instance_config
from ..inference import Prediction, PredictProgress, predict_bundle
from ..inference.tissue import BackgroundModel, estimate_background
from ..io import ImageData, read_image, write_labels
from ..models import ModelBundle, load_checkpoint
from ..preprocess import as_stack
from ..progress import run_to_completion

try:  # a worker plugin is only needed where Dask distributed is installed
    from distributed import WorkerPlugin, get_worker
except ImportError:  # pragma: no cover - distributed is a dependency
    WorkerPlugin = object  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class VolumeOptions:
    """How each volume is predicted and written (the same for every volume of a batch).

    ``probabilities_dir``: keep each volume's probabilities and labels there as memory maps
    (in ``<probabilities_dir>/<output's stem>/``, as ``predict_stack``'s ``out_dir`` writes
    them) for the caller to read, e.g. a project's teacher, whose probabilities are scored.
    ``keep_probabilities``: keep them in memory instead, in the result's ``prediction`` (in
    process only: a volume predicted without an output file).
    """

    config: PredictConfig = PredictConfig()
    cleanup: InstanceConfig | None = None
    device: str = "cpu"
    overwrite: bool = False
    probabilities_dir: str | None = None
    keep_probabilities: bool = False


class VolumeSource(Protocol):
    """A volume that is not a file of its own (a project stack's slices, say): read on the
    worker that predicts it, so it must pickle small (paths and indices, never pixels)."""

    name: str

    def read(self) -> ImageData: ...


#: What a batch predicts: a file (or OME-Zarr) path, a :class:`VolumeSource`, or, in process
#: only, an :class:`ImageData` already in memory (a napari layer's data).
Volume = str | os.PathLike[str] | VolumeSource | ImageData


def open_volume(volume: Volume) -> ImageData:
    """The image of ``volume`` (a path read lazily, a source read, data as it is)."""
    if isinstance(volume, ImageData):
        return volume
    if isinstance(volume, str | os.PathLike):
        return read_image(volume)
    return volume.read()


def volume_name(volume: Volume) -> str:
    """The file name of a path, else the source's ``name`` (the ``volume`` of a summary row)."""
    if isinstance(volume, ImageData):
        return volume.path.name
    if isinstance(volume, str | os.PathLike):
        return Path(volume).name
    return volume.name


@dataclass(frozen=True)
class VolumeResult:
    """One row of a batch's summary."""

    volume: str
    output: str
    status: str  # "done", "skipped" (its output existed) or "failed"
    shape: tuple[int, ...] = ()
    seconds: float = 0.0
    chunks: int = 0
    voxels: dict[int, int] = field(default_factory=dict)  # voxels per class id
    error: str = ""
    probabilities: str = ""  # the folder of its probabilities (VolumeOptions.probabilities_dir)
    # the prediction itself when no output file was asked for (in process only)
    prediction: Prediction | None = field(default=None, repr=False, compare=False)

    @property
    def classes_found(self) -> tuple[int, ...]:
        """Class ids other than the background (the smallest id) with at least one voxel."""
        ids = sorted(self.voxels)
        return tuple(i for i in ids[1:] if self.voxels[i] > 0)


def voxels_per_class(labels: np.ndarray, class_ids: tuple[int, ...]) -> dict[int, int]:
    counts = np.bincount(np.asarray(labels).ravel(), minlength=max(class_ids) + 1)
    return {int(c): int(counts[c]) for c in class_ids}


def _predict(
    bundle: ModelBundle, image: Any, options: VolumeOptions, **kwargs: Any
) -> Generator[PredictProgress, None, Prediction]:
    # Freed activations kept for reuse, as the command line predicts: a Dask worker's
    # MALLOC_TRIM_THRESHOLD_ (64 KiB) would otherwise page every layer's memory in again.
    kwargs.setdefault("keep_probabilities", False)
    with retained_freed_memory():
        return (
            yield from predict_bundle(
                bundle, image, config=options.config, device=options.device, **kwargs
            )
        )


def predict_volume_steps(
    bundle: ModelBundle, volume: Volume, out: str | Path | None, options: VolumeOptions
) -> Generator[PredictProgress, None, VolumeResult]:
    """Predict a whole volume and write its labels to ``out`` (TIFF or OME-Zarr, with the
    volume's voxel size, cleaned up as ``options.cleanup`` says); yield each slice's progress.

    ``out`` None (in process): nothing is written, the result's ``prediction`` holds the
    labels (not cleaned up) and, with ``options.keep_probabilities``, the probabilities.
    """
    start = time.perf_counter()
    data = open_volume(volume)
    folder = None
    if options.probabilities_dir is not None:
        folder = Path(options.probabilities_dir) / Path(out or volume_name(volume)).stem
    prediction = yield from _predict(
        bundle, data.data, options, rgb=data.rgb, out_dir=folder,
        keep_probabilities=folder is not None or options.keep_probabilities,
    )  # fmt: skip
    squeeze = data.data.ndim - (1 if data.rgb else 0) == 2  # a 2D image gives 2D labels
    labels = prediction.labels[0] if squeeze else prediction.labels
    if out is not None:
        if options.cleanup is not None:
            labels = apply_instance_config(labels, options.cleanup)
        write_labels(out, labels, data.scale, unit=data.unit, overwrite=options.overwrite)
    return VolumeResult(
        volume_label(volume),
        "" if out is None else str(out),
        "done",
        shape=tuple(int(s) for s in labels.shape),
        seconds=time.perf_counter() - start,
        chunks=1,
        voxels=voxels_per_class(labels, bundle.class_ids),
        probabilities="" if folder is None else str(folder),
        prediction=prediction if out is None else None,
    )


def predict_volume(
    bundle: ModelBundle, volume: Volume, out: str | Path | None, options: VolumeOptions
) -> VolumeResult:
    """:func:`predict_volume_steps` to its end (a Dask task yields no progress)."""
    return run_to_completion(predict_volume_steps(bundle, volume, out, options))


def volume_label(volume: Volume) -> str:
    """How a summary row names ``volume``: its path as given, or its name."""
    if isinstance(volume, str | os.PathLike):
        return str(volume)
    return volume_name(volume)


def volume_background(bundle: ModelBundle, volume: str | Path, options: VolumeOptions) -> Any:
    """The background model a whole-volume prediction would use (None when not needed)."""
    if not (options.config.crop_to_tissue or options.config.skip_empty_tiles):
        return None
    data = read_image(volume)
    return estimate_background(as_stack(data.data, data.rgb))


def predict_chunk(
    bundle: ModelBundle,
    volume: str | Path,
    start: int,
    stop: int,
    background: BackgroundModel | None,
    options: VolumeOptions,
    part: str | Path | None = None,
) -> np.ndarray | None:
    """Labels of slices ``[start, stop)`` of a volume: read with a halo of the model's
    ``context_slices`` on each side, predicted with the whole volume's ``background``.

    With ``part`` (a ``.npy`` file of the whole volume's labels), they are written into its
    slices ``[start, stop)`` and None is returned; else they are returned.
    """
    data = read_image(volume)
    stack = data.data
    halo = bundle.model_config.context_slices
    low, high = max(0, start - halo), min(stack.shape[0], stop + halo)
    prediction = run_to_completion(
        _predict(
            bundle,
            stack[low:high],
            options,
            rgb=data.rgb,
            slices=range(start - low, stop - low),
            background=background,
        )
    )
    labels = np.asarray(prediction.labels[start - low : stop - low])
    if part is None:
        return labels
    target = np.load(part, mmap_mode="r+")
    target[start:stop] = labels
    target.flush()
    del target
    return None


def finish_chunked(
    bundle: ModelBundle,
    volume: str | Path,
    part: str | Path,
    out: str | Path,
    options: VolumeOptions,
    started: float,
    chunks: int,
) -> VolumeResult:
    """Write a chunked volume's labels, gathered in ``part``, as its TIFF; remove ``part``."""
    data = read_image(volume)
    labels: np.ndarray = np.load(part, mmap_mode="r")
    if options.cleanup is not None:
        labels = apply_instance_config(np.asarray(labels), options.cleanup)
    write_labels(out, labels, data.scale, unit=data.unit, overwrite=options.overwrite)
    result = VolumeResult(
        str(volume),
        str(out),
        "done",
        shape=tuple(int(s) for s in labels.shape),
        seconds=time.time() - started,
        chunks=chunks,
        voxels=voxels_per_class(labels, bundle.class_ids),
    )
    del labels
    Path(part).unlink(missing_ok=True)
    return result


# --------------------------------------------------------------------------- on Dask workers
class ModelPlugin(WorkerPlugin):
    """Sends a checkpoint's bytes to every worker once and loads the model there.

    Registered with ``client.register_plugin``: Dask runs :meth:`setup` on every worker of
    the cluster, and on each worker that joins later. ``threads`` sets torch's CPU threads on
    the worker (None leaves them as the worker started them). ``prepare`` (a module-level
    function, so that it pickles by name) turns the loaded checkpoint into the model that
    predicts, as the command line does in process (a ``mixed`` student's branch, a ``mutual``
    pair's average: :func:`napari_distill.core.strategies.prediction_bundle`, which this layer
    may not import).
    """

    def __init__(
        self,
        checkpoint: bytes,
        threads: int | None = 1,
        prepare: Callable[[ModelBundle], ModelBundle] | None = None,
    ) -> None:
        self.checkpoint = checkpoint
        self.threads = threads
        self.prepare = prepare
        self.name = "napari-distill-model-" + hashlib.sha1(checkpoint).hexdigest()[:12]
        self.bundle: ModelBundle | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "bundle": None}  # the bytes travel, never a loaded model

    def setup(self, worker: Any = None) -> None:
        import torch

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        folder = getattr(worker, "local_directory", None) or tempfile.gettempdir()
        path = Path(folder) / f"{self.name}.pt"
        path.write_bytes(self.checkpoint)
        bundle, _ = load_checkpoint(path, device="cpu")
        self.bundle = bundle if self.prepare is None else self.prepare(bundle)


def worker_bundle(plugin_name: str) -> ModelBundle:
    """The model a :class:`ModelPlugin` loaded on the worker running the current task."""
    plugin = get_worker().plugins[plugin_name]
    if plugin.bundle is None:
        plugin.setup(get_worker())
    return plugin.bundle


def volume_task(
    plugin_name: str, volume: Volume, out: str | None, options: VolumeOptions
) -> VolumeResult:
    return predict_volume(worker_bundle(plugin_name), volume, out, options)


def background_task(plugin_name: str, volume: str, options: VolumeOptions) -> Any:
    return volume_background(worker_bundle(plugin_name), volume, options)


def chunk_task(
    plugin_name: str,
    volume: str,
    start: int,
    stop: int,
    background: BackgroundModel | None,
    options: VolumeOptions,
    part: str,
) -> tuple[int, int]:
    predict_chunk(worker_bundle(plugin_name), volume, start, stop, background, options, part)
    return start, stop


def finish_task(
    plugin_name: str,
    volume: str,
    part: str,
    out: str,
    options: VolumeOptions,
    started: float,
    done_chunks: list[tuple[int, int]],
) -> VolumeResult:
    bundle = worker_bundle(plugin_name)
    return finish_chunked(bundle, volume, part, out, options, started, len(done_chunks))
