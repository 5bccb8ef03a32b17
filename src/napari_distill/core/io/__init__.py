"""Reading images, stacks and labels with their voxel size; writing labels, probabilities and
images as TIFF.

May import: numpy, tifffile, imageio, dask, zarr; nothing else of napari-distill.
"""

from __future__ import annotations

from .cells import (
    annotated_fields,
    pack_planes,
    read_cell_planes,
    unpack_planes,
    write_cell_planes,
)
from .common import MICROMETER, ImageData, ProbabilityData, ReadError, natural_sort_key
from .kinds import looks_like_labels
from .points import POINT_COLUMNS, points_to_labels, read_points_csv
from .read import (
    LAZY_THRESHOLD_BYTES,
    ReadWarning,
    as_labels,
    can_read,
    check_output_folder,
    check_output_path,
    file_kind,
    read_any,
    read_image,
    read_image_stack,
    read_labels,
    read_probabilities,
    write_image,
    write_labels,
    write_probabilities,
)

__all__ = [
    "annotated_fields",
    "pack_planes",
    "read_cell_planes",
    "unpack_planes",
    "write_cell_planes",
    "LAZY_THRESHOLD_BYTES",
    "MICROMETER",
    "POINT_COLUMNS",
    "ImageData",
    "ProbabilityData",
    "ReadError",
    "ReadWarning",
    "as_labels",
    "can_read",
    "check_output_folder",
    "check_output_path",
    "file_kind",
    "looks_like_labels",
    "natural_sort_key",
    "points_to_labels",
    "read_any",
    "read_image",
    "read_image_stack",
    "read_labels",
    "read_points_csv",
    "read_probabilities",
    "write_image",
    "write_labels",
    "write_probabilities",
]
