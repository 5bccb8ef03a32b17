"""Batch prediction of many volumes on Dask distributed (or in this process, with the same
per-volume function): which volumes, the task of one volume or one chunk of its slices (with a
halo), the run over a cluster and its summary.

May import: inference, models, evaluation, io and the core's foundations; distributed.
"""

from __future__ import annotations

from .run import (
    BatchProgress,
    dashboard_link,
    failed_volumes,
    local_cluster,
    run_batch,
    summary_row,
    write_summary,
)
from .task import (
    ModelPlugin,
    Volume,
    VolumeOptions,
    VolumeResult,
    VolumeSource,
    open_volume,
    predict_chunk,
    predict_volume,
    predict_volume_steps,
    volume_background,
)
from .volumes import list_volumes, output_paths, plan_chunks, read_header, volume_stem

__all__ = [
    "BatchProgress",
    "ModelPlugin",
    "Volume",
    "VolumeOptions",
    "VolumeResult",
    "VolumeSource",
    "dashboard_link",
    "failed_volumes",
    "list_volumes",
    "local_cluster",
    "open_volume",
    "output_paths",
    "plan_chunks",
    "predict_chunk",
    "predict_volume",
    "predict_volume_steps",
    "read_header",
    "run_batch",
    "summary_row",
    "volume_background",
    "volume_stem",
    "write_summary",
]
