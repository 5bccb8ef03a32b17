"""What the dock widgets hand to each other through the layer list, and layer-data helpers.

The hand-off contract
---------------------
A prediction Labels layer made by a napari-distill widget carries, in
``layer.metadata["napari_distill"]`` (:data:`METADATA_KEY`), a dict:

``"role"``
    ``"teacher_prediction"`` (:data:`TEACHER_ROLE`, made by the Teacher widget) or
    ``"student_prediction"`` (:data:`STUDENT_ROLE`).
``"bundle"``
    The :class:`~napari_distill.core.models.ModelBundle` that made the prediction (its
    model, classes, normalisation and 2.5D context).
``"probabilities"``
    ``(K, N, H, W)`` float32 softmax probabilities, always 4D (a 2D image has ``N == 1``);
    channel ``k`` is class id ``class_ids[k]``.
``"class_ids"``
    ``tuple[int, ...]``, the class id of each probability channel (``class_ids[0] == 0``).
``"image_layer"``
    The name of the image layer it was predicted from (when the user renames that layer the
    name goes stale: match by shape as a fallback).
``"labels_layer"``
    Made with the Teacher's *Several images*: the name of the labels layer its image was
    paired with (None: unpainted). The predictions of one ``bundle`` form a project
    (:mod:`napari_distill._widgets.common.project_layers`).

The layer data itself is ``(N, H, W)`` class ids, or ``(H, W)`` for a 2D image, with the image
layer's scale and translate. The Quality widget scores a teacher's pseudo-labels per slice from
``probabilities``; the Student widget distils from ``bundle`` and ``probabilities``. Find them
with :func:`teacher_prediction_layers` and read the dict with :func:`handoff`.

Workers build layer data with :func:`layer_data_for` (no viewer needed); the GUI thread adds it
with :func:`add_layer_data`, which never overwrites a layer (:func:`make_unique_name`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import napari
    from napari.layers import Labels, Layer
    from napari.types import LayerDataTuple

    from napari_distill.core.inference import Prediction
    from napari_distill.core.models import ModelBundle

METADATA_KEY = "napari_distill"
TEACHER_ROLE = "teacher_prediction"
STUDENT_ROLE = "student_prediction"
PROBABILITIES_ROLE = "probabilities"


@dataclass(frozen=True)
class SourceLayer:
    """What a worker needs to know about the image layer it predicts (read on the GUI thread).

    Attributes
    ----------
    name:
        The layer's name.
    scale, translate:
        Per spatial axis (the colour axis of an RGB image excluded).
    rgb:
        Whether the data's last axis is colour.
    """

    name: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    rgb: bool

    @classmethod
    def from_layer(cls, layer: Layer) -> SourceLayer:
        return cls(
            name=str(layer.name),
            scale=tuple(float(s) for s in layer.scale),
            translate=tuple(float(t) for t in layer.translate),
            rgb=bool(getattr(layer, "rgb", False)),
        )

    @property
    def is_2d(self) -> bool:
        """Whether the image is a single 2D slice (its labels are ``(H, W)``)."""
        return len(self.scale) == 2


def image_data(layer: Layer) -> Any:
    """The layer's full-resolution data (the first level of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def spatial_shape(layer: Layer) -> tuple[int, ...]:
    """The image layer's shape without its colour axis."""
    shape = image_data(layer).shape
    return tuple(shape[:-1] if getattr(layer, "rgb", False) else shape)


def class_names_of(*layers: Layer | None) -> dict[int, str]:
    """``{class_id: name}`` from the layers' ``metadata["class_names"]`` (later ones win)."""
    names: dict[int, str] = {}
    for layer in layers:
        found = layer.metadata.get("class_names") if layer is not None else None
        if isinstance(found, dict):
            names.update({int(k): str(v) for k, v in found.items()})
    return names


def make_unique_name(viewer: napari.viewer.Viewer, name: str) -> str:
    """``name`` if no layer has it, else ``"name [2]"``, ``"name [3]"``, ..."""
    taken = {layer.name for layer in viewer.layers}
    if name not in taken:
        return name
    number = 2
    while f"{name} [{number}]" in taken:
        number += 1
    return f"{name} [{number}]"


def handoff(layer: Layer) -> dict[str, Any] | None:
    """The napari-distill hand-off dict of ``layer`` (see the module docstring), or None."""
    value = layer.metadata.get(METADATA_KEY) if hasattr(layer, "metadata") else None
    return value if isinstance(value, dict) else None


def prediction_layers(viewer: napari.viewer.Viewer, role: str) -> list[Labels]:
    """Labels layers whose hand-off dict has ``role``, in layer-list order."""
    from napari.layers import Labels

    return [
        layer
        for layer in viewer.layers
        if isinstance(layer, Labels) and (handoff(layer) or {}).get("role") == role
    ]


def teacher_prediction_layers(viewer: napari.viewer.Viewer) -> list[Labels]:
    """The teacher's prediction layers (each carries its model and probabilities)."""
    return prediction_layers(viewer, TEACHER_ROLE)


# napari's layer list cuts names longer than about this (at its default width).
MAX_NAME_LENGTH = 24
# The image's part of an output name keeps at least this many characters.
MIN_IMAGE_PART = 8


def output_name(image_name: str, what: str) -> str:
    """``"<image> <what>"`` (e.g. ``"medaka CT teacher"``), the image's name cut with "…" so
    the whole fits :data:`MAX_NAME_LENGTH` where it can; the full name of the image stays in
    the layer's hand-off dict (``"image_layer"``)."""
    room = max(MIN_IMAGE_PART, MAX_NAME_LENGTH - len(what) - 1)
    if len(image_name) > room:
        image_name = image_name[: room - 1].rstrip() + "…"
    return f"{image_name} {what}"


def layer_data_for(
    prediction: Prediction,
    source: SourceLayer,
    *,
    bundle: ModelBundle,
    role: str,
    label: str,
    with_probabilities: bool = False,
) -> list[LayerDataTuple]:
    """Layer data for a prediction: a Labels layer with the hand-off dict, and optionally an
    Image layer of the probabilities (class as the first axis).

    Parameters
    ----------
    prediction:
        From :func:`~napari_distill.core.inference.predict_bundle` with probabilities kept.
    source:
        The image layer predicted.
    bundle:
        The model that predicted.
    role:
        :data:`TEACHER_ROLE` or :data:`STUDENT_ROLE`.
    label:
        Names the layers ``"<image> <label>"`` (labels) / ``"<image> <label> probs"``
        (:func:`output_name`).
    with_probabilities:
        Also return the probabilities as an Image layer.

    Raises
    ------
    ValueError
        If the prediction kept no probabilities (the hand-off needs them).
    """
    if prediction.probabilities is None:
        raise ValueError("the prediction kept no probabilities: predict with keep_probabilities")
    labels = np.asarray(prediction.labels)
    probabilities = np.asarray(prediction.probabilities)
    if source.is_2d:
        labels = labels[0]
    metadata = {
        METADATA_KEY: {
            "role": role,
            "bundle": bundle,
            "probabilities": probabilities,
            "class_ids": tuple(prediction.class_ids),
            "image_layer": source.name,
        }
    }
    spatial = {"scale": source.scale, "translate": source.translate}
    layers: list[LayerDataTuple] = [
        (
            labels,
            {"name": output_name(source.name, label), "metadata": metadata, **spatial},
            "labels",
        )
    ]
    if with_probabilities:
        data = probabilities[:, 0] if source.is_2d else probabilities
        layers.append(
            (
                data,
                {
                    "name": output_name(source.name, f"{label} probs"),
                    "scale": (1.0, *source.scale),
                    "translate": (0.0, *source.translate),
                    "contrast_limits": (0.0, 1.0),
                    "colormap": "magma",
                    "blending": "additive",
                    "metadata": {
                        METADATA_KEY: {
                            "role": PROBABILITIES_ROLE,
                            "class_ids": tuple(prediction.class_ids),
                            "image_layer": source.name,
                        }
                    },
                },
                "image",
            )
        )
    return layers


def add_layer_data(viewer: napari.viewer.Viewer, layer_data: list[LayerDataTuple]) -> list[Layer]:
    """Add layer data to the viewer (GUI thread), renaming instead of overwriting."""
    added = []
    for data, kwargs, layer_type in layer_data:
        kwargs = {**kwargs, "name": make_unique_name(viewer, kwargs["name"])}
        added.append(getattr(viewer, f"add_{layer_type}")(data, **kwargs))
    return added


def predict_layer_image(
    bundle: ModelBundle, image: Any, source: SourceLayer, device: str, mirror: bool
) -> Generator[Any, None, Prediction]:
    """:func:`~napari_distill.core.inference.predict_bundle` on a layer's data, probabilities
    kept (the hand-off to the next widget needs them), optionally mirrored."""
    from napari_distill.core.config import PredictConfig
    from napari_distill.core.inference import predict_bundle

    return (
        yield from predict_bundle(
            bundle,
            image,
            config=PredictConfig(mirror=mirror),
            device=device,
            keep_probabilities=True,
            rgb=source.rgb,
        )
    )


def teacher_prediction(
    bundle: ModelBundle,
    image: Any,
    source: SourceLayer,
    device: str,
    with_probabilities: bool,
    mirror: bool = False,
) -> Generator[Any, None, list]:
    """Predict ``image`` with ``bundle``; return the layer data (labels, maybe probabilities)."""
    prediction = yield from predict_layer_image(bundle, image, source, device, mirror)
    return layer_data_for(
        prediction,
        source,
        bundle=bundle,
        role=TEACHER_ROLE,
        label="teacher",
        with_probabilities=with_probabilities,
    )


def mirror_checkbox() -> Any:
    """The "mirror" option of a Predict button (:attr:`PredictConfig.mirror`)."""
    from qtpy.QtWidgets import QCheckBox

    box = QCheckBox("mirror (4x slower)")
    box.setToolTip(
        "Also predict the three mirror images of every slice and average the probabilities: "
        "four times the time for slightly better labels."
    )
    return box


CHECKPOINT_FILTER = "napari-distill checkpoint (*.pt);;All files (*)"


def ask_save_model(parent: Any, title: str, default_name: str, save: Callable[[Path], Any]) -> None:
    """Ask for a file (``.pt`` added when no suffix is given) and call ``save(path)``.

    ``save`` is e.g. ``run.save`` (a resumable checkpoint) or
    ``lambda p: save_checkpoint(p, bundle)``; it must write atomically (the core's savers do).
    A failure is shown as a notification and the widget stays usable.
    """
    from napari.utils.notifications import show_error, show_info
    from qtpy.QtWidgets import QFileDialog

    path, _ = QFileDialog.getSaveFileName(parent, title, default_name, CHECKPOINT_FILTER)
    if not path:
        return
    target = Path(path) if Path(path).suffix else Path(path).with_suffix(".pt")
    try:
        save(target)
    except (OSError, ValueError) as error:
        show_error(f"Could not save to {target}: {error}")
        return
    show_info(f"Saved {target}")


def ask_load_model(parent: Any, title: str, kind: str) -> tuple[ModelBundle, Path] | None:
    """Ask for a checkpoint of ``kind`` (e.g. ``"teacher"``) and load it on the CPU.

    Returns None when the user cancels or the file is not usable (missing, corrupt, of another
    kind: shown as a notification).
    """
    from napari.utils.notifications import show_error
    from qtpy.QtWidgets import QFileDialog

    from napari_distill.core.models import CheckpointError, load_checkpoint

    path, _ = QFileDialog.getOpenFileName(parent, title, "", CHECKPOINT_FILTER)
    if not path:
        return None
    try:
        bundle, _checkpoint = load_checkpoint(path, device="cpu", kind=kind)
    except (CheckpointError, OSError) as error:
        show_error(f"Could not load a {kind}: {error}")
        return None
    return bundle, Path(path)
