"""The weak labels a ``mixed`` student learns from: a scribbles Labels layer, a Points layer
whose points carry a ``class`` feature and / or slice tags
(:class:`~napari_distill._widgets.student.slice_tags.SliceTagsPanel`), with the count of slices
of each kind.

Shown only when the chosen strategy takes weak labels
(:attr:`~napari_distill.core.strategies.StrategySpec.inputs`). In the scribbles layer 0 means
*unknown*; the background is painted with the label the strategy's settings name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Points
from qtpy.QtWidgets import QFormLayout, QLabel, QVBoxLayout, QWidget

from napari_distill._widgets.common.handoff import handoff, spatial_shape
from napari_distill._widgets.common.layers import LayerPicker
from napari_distill._widgets.student.slice_tags import SliceTagsError, SliceTagsPanel
from napari_distill.core.strategies import weak_slice_counts

if TYPE_CHECKING:
    import napari

NONE = "none"
CLASS_FEATURES = ("class", "label")


class WeakInputsError(ValueError):
    """The weak labels cannot be used; the message says what to do."""


class WeakInputs(QWidget):
    """Pickers for the scribbles and points layers, the slice tags, and a line counting slices
    by kind."""

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        image_layer: Callable[[], Any],
        full_layer: Callable[[], Any],
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.viewer = viewer
        self._image_layer = image_layer  # the chosen image layer (or None)
        self._full_layer = full_layer  # the chosen fully painted labels (never offered here)
        self.scribbles_picker = LayerPicker(viewer, Labels, accept=self._fits, none_text=NONE)
        self.scribbles_picker.setToolTip(
            "A labels layer with a few strokes per structure on slices you did not paint fully "
            "(0 = not painted, unknown; paint the background with the background label of the "
            "settings below)."
        )
        self.points_picker = LayerPicker(viewer, Points, none_text=NONE)
        self.points_picker.setToolTip(
            "A points layer with a 'class' feature (0 = background): each point counts as a "
            "small disk of its class."
        )
        self.tags_panel = SliceTagsPanel(viewer, full_layer, image_layer)
        self.counts = QLabel()
        self.counts.setWordWrap(True)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Weak labels", self.scribbles_picker)
        form.addRow("Points", self.points_picker)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.tags_panel)
        layout.addWidget(self.counts)

    def _fits(self, layer: Labels) -> bool:
        image = self._image_layer()
        return (
            image is not None
            and layer is not self._full_layer()
            and handoff(layer) is None
            and tuple(layer.data.shape) == spatial_shape(image)
        )

    def refresh(self) -> None:
        self.scribbles_picker.refresh()
        self.tags_panel.refresh()

    def _chosen(self, picker: LayerPicker) -> Any:
        return None if picker.currentText() == NONE else picker.layer()

    def scribbles(self) -> np.ndarray | None:
        """A copy of the scribbles layer's data, or None."""
        layer = self._chosen(self.scribbles_picker)
        return None if layer is None else np.array(layer.data, copy=True)

    def points(self) -> np.ndarray | None:
        """Rows ``(slice, y, x, class)`` of the points layer, or None.

        Raises
        ------
        WeakInputsError
            The points carry no ``class`` feature.
        """
        layer = self._chosen(self.points_picker)
        if layer is None or len(layer.data) == 0:
            return None
        column = next((c for c in CLASS_FEATURES if c in layer.features), None)
        if column is None:
            raise WeakInputsError(
                f"The points of '{layer.name}' have no 'class' feature: add one (0 = "
                "background) so each point says what it marks."
            )
        coords = np.rint(np.asarray(layer.data)).astype(np.int64)
        if coords.shape[1] == 2:
            coords = np.column_stack([np.zeros(len(coords), np.int64), coords])
        classes = np.asarray(layer.features[column], dtype=np.int64)
        return np.column_stack([coords[:, -3:], classes])

    def tags(self) -> dict[int, tuple[int, ...]] | None:
        """The slice tags ``{slice: present classes}``, or None when no slice is tagged.

        Raises
        ------
        WeakInputsError
            A tag names a class the full labels do not have, or a slice beyond them.
        """
        try:
            return self.tags_panel.checked_tags() or None
        except SliceTagsError as error:
            raise WeakInputsError(str(error)) from error

    def describe(self, full: np.ndarray | None) -> None:
        """Count the slices with full masks, with each kind of weak label, with weak labels
        only, and with both."""
        if full is None:
            self.counts.setText("")
            return
        stack = full.reshape((-1, *full.shape[-2:]))
        scribbled = np.zeros(len(stack), bool)
        scribbles = self.scribbles()
        if scribbles is not None and scribbles.size == stack.size:
            scribbled = scribbles.reshape(stack.shape).reshape(len(stack), -1).any(1)
        clicked = np.zeros(len(stack), bool)
        try:
            points = self.points()
        except WeakInputsError:
            points = None
        if points is not None:
            inside = (points[:, 0] >= 0) & (points[:, 0] < len(stack))
            clicked[points[inside, 0]] = True
        tagged = np.zeros(len(stack), bool)
        tagged[[i for i in self.tags_panel.tags if 0 <= i < len(stack)]] = True
        weak = np.zeros(stack.shape, bool)
        weak[scribbled | clicked | tagged, 0, 0] = True  # weak_slice_counts looks per slice
        n_full, n_weak, n_both = weak_slice_counts(stack, weak)
        self.counts.setText(
            f"Full masks on {n_full} slice(s); scribbles on {int(scribbled.sum())}, points on "
            f"{int(clicked.sum())}, tags on {int(tagged.sum())}; weak labels only on {n_weak} "
            "slice(s)"
            + (f"; {n_both} slice(s) have both (the full mask counts)." if n_both else ".")
        )
