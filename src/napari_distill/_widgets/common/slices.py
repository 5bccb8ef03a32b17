"""Which slice of a layer the viewer shows, and showing one: the Quality review walks slices by
score, the Student widget's slice tags name the slice shown.

A layer's first axis is its stack of slices; napari right-aligns a layer's axes with the
viewer's, and the layer's scale and translate map its indices to the world, so both functions
go through ``world_to_data`` / ``data_to_world``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer


def current_slice(viewer: napari.viewer.Viewer, layer: Layer) -> int | None:
    """The index along ``layer``'s axis 0 of the slice the viewer shows (None: outside)."""
    if layer.ndim < 3:
        return 0  # a 2D image is its only slice
    index = int(round(float(layer.world_to_data(viewer.dims.point)[0])))
    return index if 0 <= index < layer.data.shape[0] else None


def go_to_slice(viewer: napari.viewer.Viewer, layer: Layer, index: int) -> None:
    """Show slice ``index`` of ``layer``'s axis 0, whatever its scale and translate."""
    if layer.ndim < 3:
        return
    position = np.asarray(layer.world_to_data(viewer.dims.point), dtype=float)
    position[0] = index
    world_axis = viewer.dims.ndim - layer.ndim  # napari right-aligns a layer's axes
    viewer.dims.set_point(world_axis, float(layer.data_to_world(position)[0]))
