"""Reading images, stacks and labels with their voxel size (TIFF, 2D formats, OME-Zarr);
writing labels, probabilities and images as TIFF, and labels and images as OME-Zarr.

May import: numpy, tifffile, imageio, dask, zarr; nothing else of napari-distill.
"""

from __future__ import annotations

from .cells import (
    annotated_fields,
    cell_planes_metadata,
    pack_planes,
    read_cell_planes,
    unpack_planes,
    write_cell_planes,
)
from .common import MICROMETER, ImageData, ProbabilityData, ReadError, natural_sort_key
from .folders import LABELS_NAME_SUFFIX, is_labels_name, read_volume, volumes_in
from .kinds import looks_like_labels
from .ngff import LABELS_NAME, is_ngff, ngff_header, ngff_kind, ngff_labels, read_ngff
from .ngff_write import check_ngff_output, labels_target, write_ngff_image, write_ngff_labels
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
from .tags import TAG_COLUMNS, read_tags_csv, weak_csv_kind, write_tags_csv

__all__ = [
    "LABELS_NAME_SUFFIX",
    "is_labels_name",
    "read_volume",
    "volumes_in",
    "LABELS_NAME",
    "annotated_fields",
    "cell_planes_metadata",
    "pack_planes",
    "read_cell_planes",
    "unpack_planes",
    "write_cell_planes",
    "LAZY_THRESHOLD_BYTES",
    "MICROMETER",
    "POINT_COLUMNS",
    "TAG_COLUMNS",
    "ImageData",
    "ProbabilityData",
    "ReadError",
    "ReadWarning",
    "as_labels",
    "can_read",
    "check_ngff_output",
    "check_output_folder",
    "check_output_path",
    "file_kind",
    "is_ngff",
    "labels_target",
    "looks_like_labels",
    "natural_sort_key",
    "points_to_labels",
    "ngff_header",
    "ngff_kind",
    "ngff_labels",
    "read_any",
    "read_image",
    "read_image_stack",
    "read_labels",
    "read_points_csv",
    "read_tags_csv",
    "weak_csv_kind",
    "write_tags_csv",
    "read_ngff",
    "read_probabilities",
    "write_image",
    "write_labels",
    "write_ngff_image",
    "write_ngff_labels",
    "write_probabilities",
]
