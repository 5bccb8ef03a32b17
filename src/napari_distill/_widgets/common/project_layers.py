"""Many images in one viewer (issue 26): which labels layer goes with which image, which
teacher predictions belong together, and the project the core trains on, read from layers.

The widgets' single-image path pairs the image and the labels the user picked. With several
images, each image layer ``N`` takes the Labels layer named ``N labels`` or ``N_labels`` (what
*Open folder of volumes* gives for ``N_labels.tif``, and what the Teacher's copy of an integer
image is named), unless the user picked another for it. A teacher's prediction layers carry
their image's name and that labels layer's name in their hand-off dict
(:data:`LABELS_LAYER_KEY`), so the Quality review and the Student widget find the same pairs;
the predictions of one teacher (one ``bundle``) form the project.

The training data are the core's project stack
(:func:`napari_distill.core.project.stack_of_project`, in a :class:`ProjectWork` folder): no
second stack is written here.
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_distill._widgets.common.handoff import (
    PROBABILITIES_ROLE,
    handoff,
    image_data,
    spatial_shape,
    teacher_prediction_layers,
)
from napari_distill.core.preprocess import annotated_slices
from napari_distill.core.project import ProjectImage

if TYPE_CHECKING:
    import napari
    from napari.layers import Image, Labels, Layer

#: The hand-off key naming the labels layer a teacher prediction's image was paired with.
LABELS_LAYER_KEY = "labels_layer"
LABELS_NAMES = ("{name} labels", "{name}_labels")


class ImageSetError(ValueError):
    """The images and labels chosen cannot train together; the message names the layers."""


def is_source_image(layer: Layer) -> bool:
    """An Image layer the user opened (not a prediction's probabilities or another output)."""
    from napari.layers import Image

    return isinstance(layer, Image) and (handoff(layer) or {}).get("role") != PROBABILITIES_ROLE


def named_labels(viewer: napari.viewer.Viewer, image: Layer) -> Labels | None:
    """The Labels layer named after ``image`` (``"<image> labels"`` / ``"<image>_labels"``)."""
    from napari.layers import Labels

    for pattern in LABELS_NAMES:
        name = pattern.format(name=image.name)
        if name in viewer.layers and isinstance(viewer.layers[name], Labels):
            layer = viewer.layers[name]
            if handoff(layer) is None:  # a prediction is never someone's paint
                return layer
    return None


def slice_shape(layer: Layer) -> tuple[int, ...]:
    """The height, width (and colours) of one slice of an image layer."""
    shape = tuple(image_data(layer).shape)
    return shape[-3:] if getattr(layer, "rgb", False) else shape[-2:]


def painted_count(labels: Layer | None) -> int:
    """How many slices of ``labels`` are painted (0 for None)."""
    if labels is None:
        return 0
    data = np.asarray(labels.data)
    return len(annotated_slices(data if data.ndim > 2 else data[np.newaxis]))


def check_pairs(pairs: list[tuple[Image, Labels | None]]) -> None:
    """Refuse a labels layer of another shape than its image's, or images whose slices
    differ from the first image's, naming both layers.

    Raises
    ------
    ImageSetError
        What does not fit, and what to do.
    """
    if not pairs:
        raise ImageSetError("Tick at least one image in the list of images.")
    first = pairs[0][0]
    for image, labels in pairs:
        spatial = spatial_shape(image)
        if labels is not None and tuple(labels.data.shape) != spatial:
            raise ImageSetError(
                f"The labels layer '{labels.name}' has shape {tuple(labels.data.shape)}, but "
                f"its image '{image.name}' has {spatial}: paint labels of the image's shape "
                "(layer list: New labels layer with the image selected)."
            )
        if slice_shape(image) != slice_shape(first) or bool(image.rgb) != bool(first.rgb):
            raise ImageSetError(
                f"'{image.name}' has slices of {slice_shape(image)}, but '{first.name}' of "
                f"{slice_shape(first)}: one teacher learns from slices of one size and colours "
                "(untick one, or crop the images alike)."
            )


def project_images(pairs: list[tuple[Image, Labels | None]]) -> list[ProjectImage]:
    """The core's :class:`ProjectImage` s of the pairs, checked (:func:`check_pairs`); painted
    labels are copied (the user may keep painting), unpainted ones left out (the image is then
    pseudo-labelled), images passed as their (lazy) data.

    Raises
    ------
    ImageSetError
        As :func:`check_pairs`, or no slice of any image is painted.
    """
    check_pairs(pairs)
    images = []
    for image, labels in pairs:
        painted = None
        if labels is not None and painted_count(labels) > 0:
            painted = np.array(labels.data, copy=True)
        scale = tuple(float(s) for s in image.scale)
        images.append(ProjectImage(image.name, image_data(image), painted, scale, image.rgb))
    if not any(item.has_labels for item in images):
        raise ImageSetError(
            "No slice of the ticked images is painted: paint a few slices of one of them "
            "(its labels layer named '<image> labels'), then train."
        )
    return images


@dataclass(frozen=True)
class ProjectLayers:
    """One image of a teacher's project: its image, painted labels and teacher prediction."""

    image: Image
    labels: Labels | None
    teacher: Labels


def teacher_project(viewer: napari.viewer.Viewer, teacher: Layer | None) -> list[ProjectLayers]:
    """Every image predicted by ``teacher``'s model (the latest prediction of each image),
    with its labels layer, in the layer list's order; empty when ``teacher`` is None."""
    bundle = (handoff(teacher) or {}).get("bundle") if teacher is not None else None
    if bundle is None:
        return []
    latest: dict[str, Labels] = {}
    for layer in teacher_prediction_layers(viewer):
        shared = handoff(layer)
        if shared.get("bundle") is bundle and shared.get("image_layer") in viewer.layers:
            latest[shared["image_layer"]] = layer  # later layers are newer predictions
    found = []
    for name, layer in latest.items():
        image = viewer.layers[name]
        if not is_source_image(image) or spatial_shape(image) != tuple(layer.data.shape):
            continue
        labels_name = handoff(layer).get(LABELS_LAYER_KEY)
        labels = next((lay for lay in viewer.layers if lay.name == labels_name), None)
        if labels is not None and tuple(labels.data.shape) != tuple(layer.data.shape):
            labels = None  # resized since: its slices no longer say which were painted
        found.append(ProjectLayers(image, labels, layer))
    return found


class ProjectWork:
    """A folder for a project's stack of memory maps, alive while a widget may train or
    resume on it: :meth:`new` replaces the last one, :meth:`clear` deletes it (when the widget
    goes); one left at the interpreter's exit is deleted then."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.path: Path | None = None
        self._remove: weakref.finalize | None = None

    def new(self) -> Path:
        self.clear()
        self.path = Path(tempfile.mkdtemp(prefix=f"napari-distill-{self.prefix}-"))
        # maps still open stay readable after the folder goes (POSIX), so this never breaks
        # a run that still holds them
        self._remove = weakref.finalize(self, shutil.rmtree, self.path, True)
        return self.path

    def clear(self, *_: Any) -> None:
        if self._remove is not None:
            self._remove()
        self._remove, self.path = None, None


def project_names(pairs: list[tuple[Any, Any]]) -> str:
    """``'a', 'b' and 2 more`` for a status line."""
    names = [f"'{image.name}'" for image, _ in pairs]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
