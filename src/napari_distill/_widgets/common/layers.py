"""A combo box of the viewer's layers of one type that follows the layer list."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import QComboBox, QWidget

from napari_distill._widgets.common.handoff import image_data, make_unique_name

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels, Layer

# How an integer Image layer offered as labels is marked in the list.
IMAGE_AS_LABELS = "{name} (image: will be used as labels)"


def is_labels_image(layer: Layer) -> bool:
    """Whether ``layer`` is an Image layer that can stand for labels: integer, not RGB (e.g. a
    labels file another tool saved, opened as an image)."""
    from napari.layers import Image

    return (
        isinstance(layer, Image)
        and not layer.rgb
        and np.issubdtype(np.dtype(layer.dtype), np.integer)
    )


class LayerPicker(QComboBox):
    """Lists the viewer's layers of ``layer_type`` (optionally filtered) by name.

    It refreshes itself when layers are added, removed or renamed, and keeps the current
    choice when it still exists. Until the user (or :meth:`select`) chooses, it picks the first
    visible layer offered, so a hidden ground truth is not taken over the painted layer beside
    it.

    Parameters
    ----------
    viewer:
        The viewer whose layer list is followed.
    layer_type:
        The layer class offered (e.g. ``Labels``).
    accept:
        Which of those layers to offer (e.g. labels of the chosen image's shape).
    none_text:
        A first entry meaning "no layer".
    images_as_labels:
        For a labels picker: also offer integer Image layers that ``accept`` takes, after the
        Labels layers and marked as images (:data:`IMAGE_AS_LABELS`). They are never chosen
        automatically; :meth:`layer_as_labels` copies the chosen one into a Labels layer.
    parent:
        The parent widget.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        layer_type: type[Layer],
        accept: Callable[[Layer], bool] | None = None,
        none_text: str | None = None,
        images_as_labels: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._layer_type = layer_type
        self._accept = accept
        self._none_text = none_text
        self._images_as_labels = images_as_labels
        self._refreshing = False
        self._chosen = False  # the user (or select) chose the current entry: keep it
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        self.currentIndexChanged.connect(self._index_changed)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.changed.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _watch_name(self, event) -> None:
        event.value.events.name.connect(self.refresh)

    def _index_changed(self, _index: int) -> None:
        if not self._refreshing:
            self._chosen = True

    def set_filter(self, accept: Callable[[Layer], bool] | None) -> None:
        """Change which layers are offered (e.g. labels matching the chosen image)."""
        self._accept = accept
        self.refresh()

    def _offered(self, layer: Layer) -> bool:
        return self._accept is None or self._accept(layer)

    def _entries(self) -> list[tuple[str, str | None]]:
        """``(text, layer name)`` of every entry, in the order shown."""
        layers = list(self._viewer.layers)
        entries: list[tuple[str, str | None]] = [
            (layer.name, layer.name)
            for layer in layers
            if isinstance(layer, self._layer_type) and self._offered(layer)
        ]
        if self._images_as_labels:
            entries += [
                (IMAGE_AS_LABELS.format(name=layer.name), layer.name)
                for layer in layers
                if is_labels_image(layer) and self._offered(layer)
            ]
        if self._none_text is not None:
            entries.insert(0, (self._none_text, None))
        return entries

    def _default_index(self, entries: list[tuple[str, str | None]]) -> int:
        """The first visible layer of ``layer_type``, else the first of them, else "none"."""
        own = [
            index
            for index, (_text, name) in enumerate(entries)
            if name is not None and isinstance(self._viewer.layers[name], self._layer_type)
        ]
        visible = [index for index in own if self._viewer.layers[entries[index][1]].visible]
        if visible or own:
            return (visible or own)[0]
        return 0 if self._none_text is not None else -1

    def refresh(self, event=None) -> None:
        current = self.currentData()
        entries = self._entries()
        shown = [(self.itemText(i), self.itemData(i)) for i in range(self.count())]
        if entries == shown:
            return
        names = [name for _text, name in entries]
        keep = self._chosen and current is not None and current in names
        self._refreshing = True
        self.blockSignals(True)
        try:
            self.clear()
            for text, name in entries:
                self.addItem(text, name)
            if keep:
                self.setCurrentIndex(names.index(current))
            else:
                self._chosen = False
                self.setCurrentIndex(self._default_index(entries))
        finally:
            self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())
        self._refreshing = False

    def layer(self) -> Layer | None:
        """The chosen layer (for a labels picker possibly an Image: see :meth:`layer_as_labels`),
        or None."""
        name = self.currentData()
        if name is None or name not in self._viewer.layers:
            return None
        return self._viewer.layers[name]

    def layer_as_labels(self) -> Labels | None:
        """The chosen layer, to be used as labels (training reads it).

        An Image layer chosen (see ``images_as_labels``) is copied into a new Labels layer
        ``"<name> labels"`` with its scale and translate, which is chosen and returned; the
        Image layer is left as it was, and a notification says what was done.
        """
        layer = self.layer()
        if layer is None or not is_labels_image(layer):
            return layer
        from napari.utils.notifications import show_info

        labels = self._viewer.add_labels(
            np.array(image_data(layer), copy=True),
            name=make_unique_name(self._viewer, f"{layer.name} labels"),
            scale=layer.scale,
            translate=layer.translate,
            metadata=dict(layer.metadata),
        )
        self.select(labels)
        show_info(
            f"'{layer.name}' is an image layer: it was copied into the new labels layer "
            f"'{labels.name}', which is used ('{layer.name}' is unchanged)."
        )
        return labels

    def select(self, layer: Layer) -> None:
        """Choose ``layer`` if it is offered (and keep it chosen, as the user's choice)."""
        index = self.findData(layer.name)
        if index >= 0:
            self.setCurrentIndex(index)
            self._chosen = True


def show_annotated_slice(viewer: napari.viewer.Viewer, layer: Layer) -> int | None:
    """Move ``viewer`` to the middle annotated slice of ``layer`` (a stack of slices along its
    first axis), unless the slice shown is annotated already.

    Returns the slice shown afterwards, or None when ``layer`` is not a stack or nothing is
    painted in it. Painting starts from what is painted: a freshly opened sample otherwise
    shows its middle slice, which nobody annotated.
    """
    from napari_distill.core.preprocess import annotated_slices

    data = image_data(layer)
    if getattr(data, "ndim", 0) != 3:
        return None
    annotated = annotated_slices(np.asarray(data))
    if annotated.size == 0:
        return None
    # layers sit on the viewer's last axes; the layer's first axis is its stacking axis
    current = int(round(float(layer.world_to_data(viewer.dims.point)[0])))
    if current in annotated:
        return current
    target = int(annotated[(annotated.size - 1) // 2])
    position = [0.0] * layer.ndim
    position[0] = float(target)
    axis = viewer.dims.ndim - layer.ndim
    viewer.dims.set_point(axis, float(layer.data_to_world(position)[0]))
    return target
