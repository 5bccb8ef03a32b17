"""npe2 sample data contributions: thin adapters that turn ``core.samples`` into layers.

The samples are generated from the seeded defaults, so they equal the TIFFs shipped in
``sample_data/`` (``scripts/make_sample_data.py`` writes those from the same functions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_distill.core.samples import make_medaka, make_pap_smear

if TYPE_CHECKING:
    from napari.types import LayerDataTuple

# Robust display window: a few bright bone voxels must not wash out the soft tissue.
CONTRAST_PERCENTILES = (0.5, 99.9)


def _contrast_limits(image: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(image, CONTRAST_PERCENTILES)
    return float(low), float(max(high, low + 1))


def medaka_ct() -> list[LayerDataTuple]:
    """The synthetic Medaka micro-CT, its sparse annotations and (hidden) full ground truth."""
    sample = make_medaka()
    metadata: dict[str, Any] = {"class_names": sample.class_names, "synthetic": True}
    return [
        (
            sample.image,
            {
                "name": "Medaka CT (synthetic)",
                "scale": sample.scale,
                "contrast_limits": _contrast_limits(sample.image),
                "colormap": "gray",
                "metadata": metadata,
            },
            "image",
        ),
        (
            sample.labels_sparse,
            {"name": "Medaka annotations (sparse)", "scale": sample.scale, "metadata": metadata},
            "labels",
        ),
        (
            sample.labels_full,
            {
                "name": "Medaka ground truth",
                "scale": sample.scale,
                "metadata": metadata,
                "visible": False,
            },
            "labels",
        ),
    ]


def pap_smear() -> list[LayerDataTuple]:
    """Synthetic Pap smear fields, sparse annotations, and (hidden) instance ground truth."""
    sample = make_pap_smear()
    metadata: dict[str, Any] = {"class_names": sample.class_names, "synthetic": True}
    scale = (1.0, *sample.scale)  # fields are a stack: one step per field
    hidden = {"scale": scale, "visible": False}
    layers: list[LayerDataTuple] = [
        (
            sample.image,
            {
                "name": "Pap smear (synthetic)",
                "rgb": True,
                "scale": scale,
                "metadata": metadata,
            },
            "image",
        ),
        (
            sample.labels_sparse,
            {"name": "Pap smear annotations (sparse)", "scale": scale, "metadata": metadata},
            "labels",
        ),
        (sample.semantic_full, {"name": "Pap smear ground truth", **hidden}, "labels"),
        (sample.nuclei, {"name": "nuclei instances", **hidden}, "labels"),
    ]
    for plane, cells in enumerate(sample.cytoplasm_planes):
        layers.append((cells, {"name": f"cytoplasm instances (plane {plane})", **hidden}, "labels"))
    return layers
