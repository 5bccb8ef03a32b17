"""Batch prediction of many volumes on Dask distributed: which volumes, the task of one
volume or one chunk of its slices (with a halo), the run over a cluster and its summary.

May import: inference, models, evaluation, io and the core's foundations; distributed.
"""

from __future__ import annotations

from .run import (
    BatchProgress,
    dashboard_link,
    local_cluster,
    run_batch,
    summary_row,
    write_summary,
)
from .task import (
    ModelPlugin,
    VolumeOptions,
    VolumeResult,
    predict_chunk,
    predict_volume,
    volume_background,
)
from .volumes import list_volumes, output_paths, plan_chunks, read_header, volume_stem

__all__ = [
    "BatchProgress",
    "ModelPlugin",
    "VolumeOptions",
    "VolumeResult",
    "dashboard_link",
    "list_volumes",
    "local_cluster",
    "output_paths",
    "plan_chunks",
    "predict_chunk",
    "predict_volume",
    "read_header",
    "run_batch",
    "summary_row",
    "volume_background",
    "volume_stem",
    "write_summary",
]
