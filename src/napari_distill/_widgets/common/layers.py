"""A combo box of the viewer's layers of one type that follows the layer list."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QComboBox, QWidget

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer


class LayerPicker(QComboBox):
    """Lists the viewer's layers of ``layer_type`` (optionally filtered) by name.

    It refreshes itself when layers are added, removed or renamed, and keeps the current
    choice when it still exists.
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        layer_type: type[Layer],
        accept: Callable[[Layer], bool] | None = None,
        none_text: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._viewer = viewer
        self._layer_type = layer_type
        self._accept = accept
        self._none_text = none_text
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(12)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.changed.connect(self.refresh)
        viewer.layers.events.inserted.connect(self._watch_name)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)
        self.refresh()

    def _watch_name(self, event) -> None:
        event.value.events.name.connect(self.refresh)

    def set_filter(self, accept: Callable[[Layer], bool] | None) -> None:
        """Change which layers are offered (e.g. labels matching the chosen image)."""
        self._accept = accept
        self.refresh()

    def refresh(self, event=None) -> None:
        current = self.currentText()
        names = [
            layer.name
            for layer in self._viewer.layers
            if isinstance(layer, self._layer_type) and (self._accept is None or self._accept(layer))
        ]
        if self._none_text is not None:
            names.insert(0, self._none_text)
        if names == [self.itemText(i) for i in range(self.count())]:
            return
        self.blockSignals(True)
        self.clear()
        self.addItems(names)
        if current in names:
            self.setCurrentText(current)
        self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())

    def layer(self) -> Layer | None:
        """The chosen layer, or None."""
        name = self.currentText()
        if not name or name == self._none_text or name not in self._viewer.layers:
            return None
        return self._viewer.layers[name]

    def select(self, layer: Layer) -> None:
        """Choose ``layer`` if it is offered."""
        index = self.findText(layer.name)
        if index >= 0:
            self.setCurrentIndex(index)
