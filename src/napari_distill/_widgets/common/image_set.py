"""*Several images*: the Teacher's list of image layers to train one teacher on (issue 26).

A checkable group under the Teacher's Image / Labels rows. Ticked, it lists the viewer's image
layers, each ticked or not, with the labels layer it is paired with
(:func:`~napari_distill._widgets.common.project_layers.named_labels`, or the labels the user
picked above for the image picked above) and how many of its slices are painted; an image
without painted slices is pseudo-labelled. *Open folder of volumes...* opens every 3D stack of
a folder as its own lazy layer (:func:`open_volume_folder`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_distill._widgets.common.handoff import spatial_shape
from napari_distill._widgets.common.project_layers import (
    ImageSetError,
    check_pairs,
    is_source_image,
    named_labels,
    painted_count,
    slice_shape,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels

# Painting a burst of strokes recounts the painted slices once, this long after the last.
RECOUNT_MS = 400


def open_volume_folder(viewer: napari.viewer.Viewer, folder: str) -> list[Any]:
    """Open every volume of ``folder`` as its own lazy layer (``<stem>_labels.tif`` as Labels)
    with napari-distill's reader; the layers added.

    Raises
    ------
    napari_distill.core.io.ReadError
        The folder mixes 3D volumes and 2D images, or holds 2D slices only (one stack: open
        it with File > Open Folder instead), or a file is damaged.
    """
    from napari_distill.core.io import ReadError, volumes_in

    if not volumes_in(folder):
        raise ReadError(
            f"{folder} holds no 3D volume (a folder of 2D slices is one stack: open it with "
            "File > Open Folder)"
        )
    return viewer.open(folder, plugin="napari-distill")


class ImageSetBox(QGroupBox):
    """The images (and their labels) one teacher trains on, when *Several images* is ticked.

    Parameters
    ----------
    viewer:
        The viewer whose image layers are listed.
    chosen_pair:
        The image and labels layers picked in the widget's own rows (that image takes those
        labels, whatever their names).
    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        chosen_pair: Callable[[], tuple[Image | None, Labels | None]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Several images (one teacher for all)", parent)
        self.viewer = viewer
        self._chosen_pair = chosen_pair
        self._unticked: set[str] = set()  # images the user unticked (by name)
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip(
            "Train one teacher on the painted slices of several images (e.g. many fish), then "
            "predict each of them. Each image takes the labels layer named '<image> labels' or "
            "'<image>_labels' (or the one chosen above for the image chosen above)."
        )
        self.list = QListWidget()
        self.list.setToolTip("Tick the images to train on and predict.")
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.open_button = QPushButton("Open folder of volumes...")
        self.open_button.setToolTip(
            "Open every 3D TIFF of a folder as its own layer, read lazily (only the slices "
            "shown are read); '<name>_labels.tif' files open as their labels."
        )
        self.body = QWidget()
        layout = QVBoxLayout(self.body)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addWidget(self.summary)
        layout.addWidget(self.open_button)
        outer = QVBoxLayout(self)
        outer.addWidget(self.body)
        self.body.setVisible(False)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(RECOUNT_MS)
        self._timer.timeout.connect(self.refresh)

        self.toggled.connect(self._toggled)
        self.list.itemChanged.connect(self._item_changed)
        self.open_button.clicked.connect(self._open_clicked)
        viewer.layers.events.removed.connect(self.schedule)
        viewer.layers.events.inserted.connect(self._watch)
        for layer in viewer.layers:
            self._watch_layer(layer)

    # ------------------------------------------------------------------ layers
    def _watch(self, event: Any) -> None:
        self.schedule()
        self._watch_layer(event.value)  # the list follows shortly (once for a folder)

    def _watch_layer(self, layer: Any) -> None:
        layer.events.name.connect(self.schedule)
        if hasattr(layer.events, "paint"):
            layer.events.paint.connect(self.schedule)
            layer.events.data.connect(self.schedule)

    def schedule(self, *_: Any) -> None:
        """Recount shortly (once for a burst of brush strokes), when the list is shown."""
        if self.isChecked():
            self._timer.start()

    def _toggled(self, on: bool) -> None:
        self.body.setVisible(on)
        self.refresh()

    def _item_changed(self, item: QListWidgetItem) -> None:
        name = item.data(Qt.ItemDataRole.UserRole)
        if item.checkState() == Qt.CheckState.Checked:
            self._unticked.discard(name)
        else:
            self._unticked.add(name)
        self._update_summary()

    def labels_for(self, image: Image) -> Labels | None:
        """The labels layer paired with ``image``."""
        chosen_image, chosen_labels = self._chosen_pair()
        if chosen_image is image and chosen_labels is not None:
            from napari.layers import Labels

            if isinstance(chosen_labels, Labels):
                return chosen_labels
        return named_labels(self.viewer, image)

    def images(self) -> list[Image]:
        """The viewer's image layers that can be trained on, in the layer list's order."""
        return [layer for layer in self.viewer.layers if is_source_image(layer)]

    def refresh(self, *_: Any) -> None:
        """List the image layers again, with their labels and painted slices."""
        self.list.blockSignals(True)
        self.list.clear()
        ticked = [image for image, _labels in self.pairs()] if self.isChecked() else []
        reference = ticked[0] if ticked else None  # the first ticked image sets the slice size
        for image in self.images() if self.isChecked() else []:
            labels = self.labels_for(image)
            text = self._describe(image, labels)
            if reference is not None and slice_shape(image) != slice_shape(reference):
                size = " x ".join(str(n) for n in slice_shape(image))
                text = f"{image.name}: slices of {size}, unlike '{reference.name}' (untick it)"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, image.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            on = image.name not in self._unticked
            item.setCheckState(Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)
            self.list.addItem(item)
        self.list.blockSignals(False)
        row = self.list.sizeHintForRow(0) if self.list.count() else -1
        rows = max(2, min(self.list.count(), 8))
        self.list.setFixedHeight(rows * (row if row > 0 else 20) + 6)
        self._update_summary()

    @staticmethod
    def _describe(image: Image, labels: Labels | None) -> str:
        if labels is None:
            return f"{image.name}: no labels (pseudo-labelled)"
        if tuple(labels.data.shape) != spatial_shape(image):
            return f"{image.name} + {labels.name}: shapes differ, cannot train"
        painted = painted_count(labels)
        if painted == 0:
            return f"{image.name} + {labels.name}: nothing painted (pseudo-labelled)"
        return f"{image.name} + {labels.name}: {painted} painted slice(s)"

    # ------------------------------------------------------------------ the choice
    def active(self) -> bool:
        """Whether the widget trains and predicts the ticked images instead of one."""
        return self.isChecked()

    def pairs(self) -> list[tuple[Image, Labels | None]]:
        """The ticked images with their labels layers, in the layer list's order."""
        return [
            (image, self.labels_for(image))
            for image in self.images()
            if image.name not in self._unticked
        ]

    def _update_summary(self) -> None:
        pairs = self.pairs() if self.isChecked() else []
        if not pairs:
            self.summary.setText("Open several images (or a folder of volumes) and tick them.")
            return
        counts = [painted_count(labels) for _image, labels in pairs]
        painted = sum(1 for c in counts if c)
        text = (
            f"{len(pairs)} image(s) ticked, {painted} with painted slices ({sum(counts)} "
            f"slices): one teacher learns from those; the others are pseudo-labelled. "
            "Views are off: several images are sliced along their first axis only (hover "
            "Views for why)."
        )
        try:
            check_pairs(pairs)
        except ImageSetError as error:
            text = f"Cannot train: {error}"
        self.summary.setText(text)

    def _open_clicked(self) -> None:
        from napari.utils.notifications import show_error

        from napari_distill.core.io import ReadError

        folder = QFileDialog.getExistingDirectory(self, "Open folder of volumes")
        if not folder:
            return
        try:
            open_volume_folder(self.viewer, folder)
        except (ReadError, OSError) as error:
            show_error(f"Could not open the folder: {error}")
            return
        self.setChecked(True)
