"""Which volumes a batch predicts, where each one's labels go, and how a volume is cut.

A batch is given as a glob pattern (``'scans/*.tif'``), a folder (every image file and every
OME-Zarr image directly in it is one volume), one OME-Zarr image, or a text file listing
volumes (one path a line, ``#`` starts a comment, relative paths are relative to the list).
Each volume's labels are written to ``<out_dir>/<stem>_labels.tif`` (or ``.ome.zarr``;
``<stem>`` without ``.ome``): names are checked to be distinct before any work.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from ..io import ngff_header, ngff_kind
from ..io.common import IMAGE_SUFFIXES, natural_sort_key

LIST_SUFFIXES = (".txt", ".lst")
LABELS_SUFFIX = "_labels"
#: Share of a worker's memory limit that a volume's image and labels may take before it is
#: cut into chunks of slices (the rest: the network's activations, which tiling bounds, and
#: Python itself).
VOLUME_MEMORY_FRACTION = 0.4


def list_volumes(spec: str) -> list[Path]:
    """The volumes named by a glob pattern, a folder or a text file listing them.

    Raises
    ------
    ValueError
        Nothing matches, or the list names a file that does not exist.
    """
    path = Path(spec)
    if ngff_kind(path) == "image":
        return [path]
    if path.is_dir():
        volumes = [p for p in path.iterdir() if _is_image(p)]
        what = (
            f"the folder {path} holds no image file ({', '.join(IMAGE_SUFFIXES)}) "
            "and no OME-Zarr image"
        )
    elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        volumes = []
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                volume = Path(line) if Path(line).is_absolute() else path.parent / line
                if not volume.exists():
                    raise ValueError(f"{path} lists {line}, which does not exist")
                volumes.append(volume)
        return volumes  # in the list's order
    elif path.is_file():
        return [path]
    else:
        volumes = [Path(p) for p in glob.glob(spec, recursive=True)]
        what = f"no file matches {spec!r}"
    if not volumes:
        raise ValueError(what)
    return sorted(volumes, key=natural_sort_key)


def _is_image(path: Path) -> bool:
    if path.is_dir():
        return ngff_kind(path) == "image"
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def volume_stem(volume: Path) -> str:
    """``fish_01.ome.tif`` -> ``fish_01``, ``fish_02.ome.zarr`` -> ``fish_02``."""
    name = volume.name
    for suffix in (*IMAGE_SUFFIXES, ".zarr", ".ome"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name


def output_paths(volumes: list[Path], out_dir: Path, suffix: str = ".tif") -> list[Path]:
    """``<out_dir>/<stem>_labels<suffix>`` for each volume, refusing two volumes one name."""
    outputs = [out_dir / f"{volume_stem(v)}{LABELS_SUFFIX}{suffix}" for v in volumes]
    seen: dict[Path, Path] = {}
    for volume, out in zip(volumes, outputs, strict=True):
        if out in seen:
            raise ValueError(
                f"{seen[out]} and {volume} would both write {out.name}: give volumes "
                "distinct names, or predict them in separate batches"
            )
        seen[out] = volume
    return outputs


@dataclass(frozen=True)
class VolumeHeader:
    """What a TIFF's header says of a volume: ``(N, H, W)`` or ``(N, H, W, 3)``, bytes per
    pixel."""

    shape: tuple[int, ...]
    itemsize: int

    @property
    def slice_bytes(self) -> int:
        """Bytes of one slice of the image plus one of its (uint8..uint32) labels."""
        pixels = math.prod(self.shape[1:3])
        colours = self.shape[3] if len(self.shape) == 4 else 1
        return pixels * (colours * self.itemsize + 4)


def read_header(volume: Path) -> VolumeHeader | None:
    """The shape of a 3D TIFF stack or OME-Zarr image from its metadata (no pixel read); None
    for anything else (2D images, folders of slices: predicted whole)."""
    if ngff_kind(volume) == "image":
        header = ngff_header(volume)
        return None if header is None else VolumeHeader(header[0], header[1].itemsize)
    if volume.suffix.lower() not in (".tif", ".tiff"):
        return None
    with tifffile.TiffFile(volume) as tiff:
        series = tiff.series[0]
        shape = tuple(int(s) for s in series.shape)
        itemsize = np.dtype(series.dtype).itemsize
    if len(shape) not in (3, 4) or (len(shape) == 3 and shape[-1] in (3, 4)):
        return None
    return VolumeHeader(shape, itemsize)


def plan_chunks(slices: int, chunk_slices: int | None) -> list[tuple[int, int]]:
    """``[start, stop)`` of consecutive chunks of at most ``chunk_slices`` slices (one chunk,
    the whole volume, when None or at least ``slices``)."""
    if chunk_slices is None or chunk_slices >= slices:
        return [(0, slices)]
    if chunk_slices < 1:
        raise ValueError(f"chunks need at least one slice, got {chunk_slices}")
    return [(start, min(slices, start + chunk_slices)) for start in range(0, slices, chunk_slices)]


def chunk_slices_for_memory(
    header: VolumeHeader, memory_limit: int | None, halo: int
) -> int | None:
    """Slices per chunk so that a chunk (with its ``halo`` on both sides) takes at most
    :data:`VOLUME_MEMORY_FRACTION` of a worker's ``memory_limit`` (bytes); None (whole) when
    the volume fits or the workers have no limit."""
    if not memory_limit:
        return None
    budget = int(VOLUME_MEMORY_FRACTION * memory_limit) // max(1, header.slice_bytes)
    if budget >= header.shape[0]:
        return None
    return max(1, budget - 2 * halo)
