"""``predict --out-dir``: many volumes on a Dask cluster, a labels file and a summary row each.

The ``predict`` command (:mod:`.predict`) hands over here when it is given ``--out-dir``
instead of ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from napari_distill.cli._base import UserError, check_output, drive, threads_setting
from napari_distill.core.config import PredictConfig
from napari_distill.core.io import check_output_folder

log = logging.getLogger("napari_distill")

SUMMARY_NAME = "summary.csv"


#: Where a batch runs when neither --scheduler nor --workers is given.
LOCAL_CLUSTER = "a local cluster of one single-threaded worker process per core"
IN_PROCESS = "predicted in this process, one image after another"


def add_cluster_arguments(p: argparse.ArgumentParser, *, when: str, default: str) -> None:
    """``--scheduler`` and ``--workers``: where a batch's tasks run (read with
    :func:`cluster_client`). ``when``: the options they go with (``"--out-dir"``);
    ``default``: where the tasks run without either (:data:`LOCAL_CLUSTER` or
    :data:`IN_PROCESS`). Each worker computes with ``--threads`` torch threads (auto: 1)."""
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help=f"with {when}: the address of a running Dask scheduler, e.g. tcp://node:8786 "
        f"(default: {default})",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help=f"with {when} and no --scheduler: worker processes of a local Dask cluster "
        f"(default: {'one per core' if default == LOCAL_CLUSTER else 'none, ' + default})",
    )


def add_batch_arguments(p: argparse.ArgumentParser) -> None:
    """The options of a batch (``--out-dir`` and what goes with it)."""
    add_cluster_arguments(p, when="--out-dir", default=LOCAL_CLUSTER)
    p.add_argument(
        "--chunk-slices",
        type=int,
        metavar="N",
        help="with --out-dir: predict volumes in chunks of N slices (with the model's context "
        "slices as a halo; the labels are those of the whole volume); 0 never cuts (default: "
        "only volumes too large for a worker's memory are cut)",
    )


def check_cluster_arguments(args: argparse.Namespace) -> None:
    """Refuse a ``--workers`` count below one (or not a whole number, from a project file)."""
    workers = args.workers
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)):
        raise UserError(f"--workers must be a whole number, got {workers!r}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers must be >= 1, got {workers}")


def _check(args: argparse.Namespace) -> None:
    for option in ("probabilities", "instances", "work_dir"):
        if getattr(args, option):
            flag = "--" + option.replace("_", "-")
            raise UserError(f"{flag} writes one file: use it with --out, not --out-dir")
    if args.chunk_slices is not None and args.chunk_slices < 0:
        raise UserError(f"--chunk-slices must be >= 0, got {args.chunk_slices}")
    check_cluster_arguments(args)


def worker_threads(args: argparse.Namespace) -> int:
    """Torch's CPU threads on each worker: ``--threads`` (auto: one per worker process)."""
    return threads_setting(args) or 1


@contextlib.contextmanager
def cluster_client(args: argparse.Namespace, *, local_by_default: bool = True) -> Iterator[Any]:
    """A client of the cluster at ``--scheduler``, or of a local cluster (``--workers``)
    closed afterwards; None when neither is given and not ``local_by_default`` (in process).

    The scheduler is reached before any work starts: one that does not answer (within Dask's
    ``distributed.comm.timeouts.connect``, 30 s by default) is a :class:`UserError`.
    """
    if not (args.scheduler or args.workers or local_by_default):
        yield None
        return
    from distributed import Client

    from napari_distill.core.batch import dashboard_link, local_cluster

    # Dask's own records of its workers' comings and goings: only its warnings and errors
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.scheduler:
        try:
            # not the default: dask's own computations (a lazy file read here) stay here
            client = Client(args.scheduler, set_as_default=False)
        except OSError as exc:
            raise UserError(f"--scheduler: no Dask scheduler answers at {args.scheduler}") from exc
        except (TypeError, ValueError) as exc:  # not an address: no port, unknown protocol
            raise UserError(f"--scheduler: {args.scheduler!r} is not an address ({exc})") from exc
        with client:
            yield client
        return
    with local_cluster(args.workers) as cluster, Client(cluster, set_as_default=False) as client:
        link = dashboard_link(client)
        workers = len(cluster.workers)
        log.info("local Dask cluster: %d worker process%s", workers, "" if workers == 1 else "es")
        if link:
            log.info("Dask dashboard: %s", link)
        yield client


def _suffix(out_format: str | None, volumes: list[Path]) -> str:
    """The labels files' suffix: ``--out-format``, else OME-Zarr when every volume is one."""
    from napari_distill.core.io import is_ngff

    if out_format is None:
        out_format = "zarr" if volumes and all(is_ngff(v) for v in volumes) else "tiff"
    return ".ome.zarr" if out_format == "zarr" else ".tif"


def predict_batch(args: argparse.Namespace, bundle: Any, cleanup: Any) -> None:
    """Predict every volume of ``--image`` into ``--out-dir`` with ``bundle`` (the model loaded
    from ``--model``) and the semantic ``cleanup``; write the summary CSV."""
    from napari_distill.core.batch import (
        VolumeOptions,
        list_volumes,
        output_paths,
        run_batch,
        write_summary,
    )
    from napari_distill.core.strategies import prediction_bundle

    _check(args)
    out_dir = check_output_folder(args.out_dir, create=True)
    summary = check_output(out_dir / SUMMARY_NAME, overwrite=True, suffixes=(".csv",))
    try:
        volumes = list_volumes(args.image)
        outputs = output_paths(volumes, out_dir, _suffix(args.out_format, volumes))
    except ValueError as exc:
        raise UserError(f"--image: {exc}") from exc
    checkpoint = Path(args.model).read_bytes()
    options = VolumeOptions(
        config=PredictConfig(
            tile_size=args.tile_size,
            overlap=args.overlap,
            crop_to_tissue=not args.no_crop,
            mirror=args.mirror,
        ),
        cleanup=cleanup,
        device=args.device,
        overwrite=args.overwrite,
    )
    threads = worker_threads(args)
    log.info("%d volume%s -> %s", len(volumes), "" if len(volumes) == 1 else "s", out_dir)
    with cluster_client(args) as client:
        results = drive(
            run_batch(
                client,
                bundle,
                checkpoint,
                volumes,
                outputs,
                options,
                chunk_slices=args.chunk_slices,
                threads=threads,
                prepare=prediction_bundle,
            ),  # fmt: skip
            desc="predict",
            quiet=args.quiet,
            unit="volume",
        )
    write_summary(summary, results)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    log.info(
        "%d predicted, %d skipped (already done), %d failed; summary: %s",
        counts["done"], counts["skipped"], counts["failed"], summary,
    )  # fmt: skip
    for result in results:
        if result.status == "failed":
            log.warning("failed: %s: %s", result.volume, result.error)
    if counts["failed"]:
        raise UserError(f"{counts['failed']} of {len(results)} volumes failed (see {summary})")
