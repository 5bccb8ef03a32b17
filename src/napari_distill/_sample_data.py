"""npe2 sample data contributions: thin adapters that turn ``core.samples`` into layers.

The samples are generated from the seeded defaults, so they equal the TIFFs shipped in
``sample_data/`` (``scripts/make_sample_data.py`` writes those from the same functions).

napari adds the layers in the order returned and selects the last one added, so the painted
annotations come last: the paint tools then act on them, not on a hidden ground truth. A sample
function cannot move the viewer to a slice (it returns layer data and sees no viewer); the
Teacher widget shows a painted slice when it picks the annotations. Names are short enough for
napari's layer list (it cuts long ones).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from napari_distill.core.samples import make_medaka, make_pap_smear

if TYPE_CHECKING:
    from napari.types import LayerDataTuple

# The cells sample paints its first fields, as a user would start: two give the cell teacher
# cells to learn from and leave the other fields to predict (or to learn from by mean-teacher).
CELL_PAINTED_FIELDS = 2

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
                "name": "medaka CT",
                "scale": sample.scale,
                "contrast_limits": _contrast_limits(sample.image),
                "colormap": "gray",
                "metadata": metadata,
            },
            "image",
        ),
        (
            sample.labels_full,
            {
                "name": "medaka truth",
                "scale": sample.scale,
                "metadata": metadata,
                "visible": False,
            },
            "labels",
        ),
        (
            sample.labels_sparse,
            {"name": "medaka painted", "scale": sample.scale, "metadata": metadata},
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
            {"name": "pap smear", "rgb": True, "scale": scale, "metadata": metadata},
            "image",
        ),
        (sample.semantic_full, {"name": "pap truth", **hidden}, "labels"),
        (sample.nuclei, {"name": "pap nuclei truth", **hidden}, "labels"),
    ]
    for plane, cells in enumerate(sample.cytoplasm_planes):
        layers.append((cells, {"name": f"pap cytoplasm truth {plane}", **hidden}, "labels"))
    layers.append(
        (
            sample.labels_sparse,
            {"name": "pap painted", "scale": scale, "metadata": metadata},
            "labels",
        )
    )
    return layers


def pap_smear_cells() -> list[LayerDataTuple]:
    """The Pap smear fields with whole, overlapping cells painted on the first fields.

    For the docks' *Overlapping cells* task: ``pap cells`` holds the painted cells with the
    plane axis first, ``(P, N, H, W)`` as napari lines it up with the fields (a layer marked
    ``cell_planes``, which the writer saves as ``(N, P, H, W)``), ``pap nuclei`` their nuclei;
    the other fields are unpainted. The whole truth comes hidden, for comparison.
    """
    sample = make_pap_smear()
    scale = (1.0, *sample.scale)
    planes_scale = (1.0, *scale)  # the plane axis in front of the fields
    painted_cells = sample.cytoplasm_planes.copy()
    painted_cells[:, CELL_PAINTED_FIELDS:] = 0
    painted_nuclei = sample.nuclei.copy()
    painted_nuclei[CELL_PAINTED_FIELDS:] = 0
    planes = {"cell_planes": True, "synthetic": True}
    hidden = {"visible": False}
    return [
        (sample.image, {"name": "pap smear", "rgb": True, "scale": scale}, "image"),
        (
            sample.cytoplasm_planes,
            {"name": "pap cells truth", "scale": planes_scale, "metadata": planes, **hidden},
            "labels",
        ),
        (sample.nuclei, {"name": "pap nuclei truth", "scale": scale, **hidden}, "labels"),
        (painted_nuclei, {"name": "pap nuclei", "scale": scale, "opacity": 0.6}, "labels"),
        (
            painted_cells,
            {"name": "pap cells", "scale": planes_scale, "metadata": planes, "opacity": 0.5},
            "labels",
        ),
    ]
