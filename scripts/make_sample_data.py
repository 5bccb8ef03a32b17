"""Regenerate the TIFFs in ``sample_data/`` from the seeded defaults of ``core.samples``.

Run from the repository root after changing a generator:

    .venv/bin/python scripts/make_sample_data.py

Files are zlib-compressed ImageJ TIFFs with the voxel size in micrometres (``spacing`` and the
X/Y resolution tags), so Fiji, tifffile and napari readers all see the physical scale.
The tests check that these files equal the generator output.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import tifffile

from napari_distill.core.samples import make_medaka, make_pap_smear

logger = logging.getLogger("make_sample_data")
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "sample_data"


def write_tiff(
    path: Path, data: np.ndarray, axes: str, scale: tuple[float, ...], rgb: bool = False
) -> None:
    """Write ``data`` as a zlib-compressed ImageJ TIFF; ``scale`` is (z, y, x) or (y, x) in um."""
    y_um, x_um = scale[-2:]
    metadata: dict[str, object] = {"axes": axes, "unit": "um"}
    if len(scale) == 3:
        metadata["spacing"] = scale[0]
    tifffile.imwrite(
        path,
        data,
        imagej=True,
        photometric="rgb" if rgb else "minisblack",
        resolution=(1.0 / x_um, 1.0 / y_um),
        metadata=metadata,
        compression="zlib",
        compressionargs={"level": 9},
    )
    logger.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)


def main(out_dir: Path = DEFAULT_DIR) -> None:
    """Write every sample file into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    medaka = make_medaka()
    write_tiff(out_dir / "medaka_ct.tif", medaka.image, "ZYX", medaka.scale)
    write_tiff(out_dir / "medaka_labels_sparse.tif", medaka.labels_sparse, "ZYX", medaka.scale)
    write_tiff(out_dir / "medaka_labels_full.tif", medaka.labels_full, "ZYX", medaka.scale)
    pap = make_pap_smear()
    write_tiff(out_dir / "pap_smear.tif", pap.image, "ZYXS", pap.scale, rgb=True)
    write_tiff(out_dir / "pap_smear_labels_sparse.tif", pap.labels_sparse, "ZYX", pap.scale)
    write_tiff(out_dir / "pap_smear_labels_full.tif", pap.semantic_full, "ZYX", pap.scale)
    write_tiff(out_dir / "pap_smear_nuclei.tif", pap.nuclei, "ZYX", pap.scale)
    # ImageJ wants channels after slices: stored (field, plane, H, W), planes as channels.
    planes = np.ascontiguousarray(np.moveaxis(pap.cytoplasm_planes, 0, 1))
    write_tiff(out_dir / "pap_smear_cytoplasm_planes.tif", planes, "ZCYX", pap.scale)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_DIR)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(parser.parse_args().out_dir)
