"""Overlapping cells in napari: the painted cells layer, the counts the docks show, and the
layers a cell prediction comes back as (docs/cells.md, *In napari*).

**Painting.** Cells are one Labels layer with a plane axis. napari lines layers up by their
*last* axes, so the plane axis comes *first* in the viewer: ``(P, N, H, W)`` for a stack of
``N`` fields (``(P, H, W)`` for one field), and the field slider then moves the image, the
nuclei and the cells together. Files keep the core's order ``(N, P, H, W)``; the reader and the
writer swap the two axes of a layer marked ``metadata["cell_planes"]``.

**Prediction.** One Labels layer per plane, ``(N, H, W)``, drawn as outlines (napari's
``contour``), plus the nuclei: two overlapping cells lie in different planes, so both outlines
show whole at once, each cell in its own colour (ids are unique within a field, and every plane
layer uses the same colour map). The per-cell table (:mod:`.cells_table`) lists which cells
overlap which.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_distill._widgets.common.handoff import METADATA_KEY, SourceLayer, output_name

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer
    from napari.types import LayerDataTuple

    from napari_distill.core.models.cells import CellModel

CELL_TEACHER_ROLE = "cell_teacher_prediction"
CELL_STUDENT_ROLE = "cell_student_prediction"
PLANE_FIRST_AXES = {4: ("plane", "field", "y", "x"), 3: ("plane", "y", "x")}
OUTLINE_PX = 2  # outline thickness of a predicted cell, in pixels
NEW_PLANES = 3  # planes of a new cells layer: enough for most overlaps, and Add plane adds more


def planes_of_layer(data: Any, one_field: bool) -> np.ndarray:
    """The core's ``(N, P, H, W)`` from a cells layer's ``(P, N, H, W)`` (``(P, H, W)`` for one
    field)."""
    data = np.asarray(data)
    return data[:, None] if one_field else np.swapaxes(data, 0, 1)


def layer_of_planes(planes: np.ndarray, one_field: bool) -> np.ndarray:
    """A cells layer's data from the core's ``(N, P, H, W)``."""
    return planes[:, 0] if one_field else np.swapaxes(planes, 0, 1)


def fits_cells(layer: Layer, spatial: tuple[int, ...]) -> bool:
    """Whether a Labels layer can hold the cells of an image of ``spatial`` shape ``(N, H, W)``
    or ``(H, W)``: a plane axis in front of it."""
    shape = tuple(layer.data.shape)
    return len(shape) == len(spatial) + 1 and shape[1:] == spatial


def new_cells_layer_data(spatial: tuple[int, ...], source: SourceLayer) -> LayerDataTuple:
    """An empty cells layer for painting: :data:`NEW_PLANES` planes before the image's axes."""
    data = np.zeros((NEW_PLANES, *spatial), np.uint32)
    kwargs = {
        "name": output_name(source.name, "cells"),
        "scale": (1.0, *source.scale),
        "translate": (0.0, *source.translate),
        "axis_labels": PLANE_FIRST_AXES[data.ndim],
        "metadata": {"cell_planes": True},
    }
    return data, kwargs, "labels"


def add_plane(layer: Layer) -> None:
    """Give a cells layer one more empty plane (nothing painted is changed)."""
    data = np.asarray(layer.data)
    empty = np.zeros((1, *data.shape[1:]), data.dtype)
    layer.data = np.concatenate([data, empty])


@dataclass(frozen=True)
class PaintedCells:
    """What is painted: the fields with a cell, cells, those overlapping another, planes used,
    nuclei on those fields, and cells holding no painted nucleus (the model cannot learn them)."""

    annotated: list[int]
    n_fields: int
    cells: int
    overlapping: int
    planes_used: int
    nuclei: int
    without_nucleus: int

    def text(self) -> str:
        """One paragraph for the dock."""
        if not self.annotated:
            return (f"No field is painted yet ({self.n_fields} field(s)): paint cells in the "
                    "cells layer (a free plane for a cell that overlaps another) and their "
                    "nuclei in the nuclei layer on a few fields.")  # fmt: skip
        shown = ", ".join(str(i) for i in self.annotated[:8])
        more = " ..." if len(self.annotated) > 8 else ""
        text = (
            f"{len(self.annotated)} of {self.n_fields} fields painted ({shown}{more}): "
            f"{self.cells} cells ({self.overlapping} overlapping another) in "
            f"{self.planes_used} plane(s), {self.nuclei} nuclei."
        )
        if self.without_nucleus:
            text += f" {self.without_nucleus} cell(s) hold no painted nucleus: not learnt."
        return text


def count_painted(planes: np.ndarray, nuclei: np.ndarray | None) -> PaintedCells:
    """Count ``planes`` ``(N, P, H, W)`` and ``nuclei`` ``(N, H, W)`` as :class:`PaintedCells`."""
    annotated = [i for i in range(planes.shape[0]) if planes[i].any()]
    cells = overlapping = without = n_nuclei = planes_used = 0
    for index in annotated:
        field = planes[index]
        used = [p for p in field if p.any()]
        planes_used = max(planes_used, len(used))
        ids = [np.unique(p[p > 0]) for p in used]
        cells += sum(len(i) for i in ids)
        shared = (np.stack(used) > 0).sum(0) > 1
        overlapping += len(np.unique(np.concatenate([p[shared] for p in used])))
        if nuclei is not None:
            nucleus = nuclei[index] > 0
            n_nuclei += len(np.unique(nuclei[index][nucleus]))
            for plane in used:
                holding = np.unique(plane[nucleus & (plane > 0)])
                without += len(np.setdiff1d(np.unique(plane[plane > 0]), holding))
    return PaintedCells(annotated, planes.shape[0], cells, overlapping, planes_used, n_nuclei,
                        without)  # fmt: skip


def cell_layer_data(
    planes: np.ndarray,
    nuclei: np.ndarray,
    source: SourceLayer,
    *,
    label: str,
    role: str,
    model: CellModel,
) -> list[LayerDataTuple]:
    """The layers of a cell prediction: one outline layer per plane ``"<image> <label> cells
    k"`` and ``"<image> <label> nuclei"``; each carries the model in its hand-off dict
    (``metadata["napari_distill"]``: role, model, image layer, plane)."""
    spatial = {"scale": source.scale, "translate": source.translate}

    def handoff(plane: int | None) -> dict:
        return {METADATA_KEY: {"role": role, "model": model, "image_layer": source.name,
                               "plane": plane}}  # fmt: skip

    def field_axes(data: np.ndarray) -> np.ndarray:
        return data[0] if source.is_2d else data

    layers: list[LayerDataTuple] = [
        (field_axes(nuclei), {"name": output_name(source.name, f"{label} nuclei"),
                              "metadata": handoff(None), "opacity": 0.6, **spatial}, "labels")
    ]  # fmt: skip
    for plane in range(planes.shape[1]):
        name = output_name(source.name, f"{label} cells {plane + 1}")
        kwargs = {"name": name, "metadata": handoff(plane), **spatial}
        layers.append((field_axes(planes[:, plane]), kwargs, "labels"))
    return layers


def add_cell_layers(viewer: napari.viewer.Viewer, layer_data: list[LayerDataTuple]) -> list:
    """Add a cell prediction's layers (GUI thread; never replacing a layer): the plane layers
    drawn as outlines, so overlapping cells show whole."""
    from napari_distill._widgets.common.handoff import add_layer_data

    added = add_layer_data(viewer, layer_data)
    for layer in added:
        if layer.metadata.get(METADATA_KEY, {}).get("plane") is not None:
            layer.contour = OUTLINE_PX
    return added


def cell_prediction(
    model: CellModel, image: Any, source: SourceLayer, device: str, label: str, role: str
) -> Generator[Any, None, list]:
    """Predict every field of ``image`` (a worker runs this); return the layer data."""
    from napari_distill.core.device import select_device
    from napari_distill.core.inference.cells import predict_cells

    model = model.to(select_device(device))  # where it trained, unless another was chosen
    data = np.asarray(image)
    planes, nuclei = yield from predict_cells(model, data[None] if source.is_2d else data,
                                              source.rgb)  # fmt: skip
    return cell_layer_data(planes, nuclei, source, label=label, role=role, model=model)


def prediction_planes(viewer: napari.viewer.Viewer, any_layer: Layer) -> tuple[np.ndarray, list]:
    """The planes ``(N, P, H, W)`` of the prediction ``any_layer`` belongs to, from its plane
    layers (same image, same model), and those layers in plane order."""
    info = any_layer.metadata.get(METADATA_KEY, {})
    layers = [
        layer
        for layer in viewer.layers
        if (meta := layer.metadata.get(METADATA_KEY, {})).get("plane") is not None
        and meta.get("model") is info.get("model")
        and meta.get("image_layer") == info.get("image_layer")
    ]
    layers.sort(key=lambda layer: layer.metadata[METADATA_KEY]["plane"])
    stacked = np.stack([np.asarray(layer.data) for layer in layers], axis=-3)
    return (stacked[None] if stacked.ndim == 3 else stacked), layers


def cell_teacher_layers(viewer: napari.viewer.Viewer) -> list[Layer]:
    """The nuclei layers of the Teacher's cell predictions (one per prediction): each carries
    the teacher model the Student starts from."""
    return [
        layer
        for layer in viewer.layers
        if (meta := layer.metadata.get(METADATA_KEY, {})).get("role") == CELL_TEACHER_ROLE
        and meta.get("plane") is None
    ]
