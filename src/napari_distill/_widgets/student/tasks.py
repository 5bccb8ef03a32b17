"""What the Student widget runs in its workers, its export file dialog and small view helpers.

The generators here take plain data read on the GUI thread and return data (layer data, the
paths written); they never touch a layer, so a worker can run them.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QFileDialog, QFormLayout, QMessageBox, QWidget

from napari_distill._widgets.common.handoff import (
    STUDENT_ROLE,
    SourceLayer,
    layer_data_for,
    output_name,
    predict_layer_image,
)
from napari_distill._writer import write_labels_layer
from napari_distill.core.config import InstanceConfig
from napari_distill.core.evaluation import apply_instance_config, describe_cleanup
from napari_distill.core.strategies import get_strategy

if TYPE_CHECKING:
    from napari_distill._widgets.common.train_settings import TrainSettings
    from napari_distill.core.inference import Prediction
    from napari_distill.core.models import ModelBundle
    from napari_distill.core.training import TrainingRun, TrainStep

TIFF_FILTER = "TIFF (*.tif *.tiff)"
ALL_FOREGROUND = "all foreground classes"


def student_training(
    strategy: str, teacher: ModelBundle, image: Any, labels: np.ndarray, accepted: list[int],
    **kwargs: Any,
) -> Generator[TrainingRun | TrainStep, None, ModelBundle]:  # fmt: skip
    """Build a student run with ``strategy``, hand it to the caller (first yield), train it.

    ``kwargs`` go to the strategy's builder. The run is yielded first so the GUI holds it: after
    a Stop its ``best_bundle()`` is kept and ``steps()`` resumes it.
    """
    run = get_strategy(strategy).build(teacher, image, labels, accepted, **kwargs)
    yield run
    return (yield from run.steps())


def student_prediction(
    bundle: ModelBundle,
    image: Any,
    source: SourceLayer,
    device: str,
    instance_classes: Sequence[int] | None = None,
    mirror: bool = False,
    cleanup: InstanceConfig | None = None,
) -> Generator[Any, None, list]:
    """Predict ``image`` with the student; return the labels layer data
    (:func:`student_layers`)."""
    prediction = yield from predict_layer_image(bundle, image, source, device, mirror)
    return student_layers(prediction, source, bundle, instance_classes, cleanup)


def student_layers(
    prediction: Prediction,
    source: SourceLayer,
    bundle: ModelBundle,
    instance_classes: Sequence[int] | None = None,
    cleanup: InstanceConfig | None = None,
) -> list:
    """The labels layer data of the student's ``prediction`` of ``source``.

    ``cleanup`` (a ``"semantic"`` :class:`InstanceConfig`: one piece per organ named, small
    pieces dropped) is applied to the labels first. With ``instance_classes`` (empty: every
    foreground class) the labels are then split into instances (cells) by
    :func:`~napari_distill.core.evaluation.apply_instance_config`.
    """
    layers = layer_data_for(prediction, source, bundle=bundle, role=STUDENT_ROLE, label="student")
    data, kwargs, kind = layers[0]
    if cleanup is not None and describe_cleanup(cleanup):
        # Named apart, so the cleaned layer can be compared with one predicted without.
        data = apply_instance_config(np.asarray(data), cleanup)
        kwargs = {**kwargs, "name": output_name(source.name, "student clean")}
        layers[0] = (data, kwargs, kind)
    if instance_classes is not None:
        config = InstanceConfig(mode="instances", instance_classes=tuple(instance_classes))
        instances = apply_instance_config(np.asarray(data), config)
        layers[0] = (instances, {**kwargs, "name": output_name(source.name, "instances")}, kind)
    return layers


def export_labels(path: str, data: Any, meta: dict[str, Any]) -> Generator[str, None, list[str]]:
    """Write labels to a TIFF with the plugin's writer (a generator so a worker can run it;
    the file is written atomically, so a stop or a full disk never leaves half a file)."""
    yield f"writing {path}"
    return write_labels_layer(path, data, meta)


def ask_export_path(parent: QWidget, default_name: str) -> Path | None:
    """Ask where to write a labels TIFF; None when cancelled or when replacing is declined.

    The dialog asks before replacing the file named; a name typed without ``.tif`` gets it,
    and that file is asked about here.
    """
    chosen, _ = QFileDialog.getSaveFileName(parent, "Export labels", default_name, TIFF_FILTER)
    if not chosen:
        return None
    path = Path(chosen)
    if path.suffix.lower() in (".tif", ".tiff"):
        return path
    path = path.with_name(path.name + ".tif")
    if path.exists() and not _confirm_overwrite(parent, path):
        return None
    return path


def _confirm_overwrite(parent: QWidget, path: Path) -> bool:
    answer = QMessageBox.question(
        parent, "Replace file?", f"{path.name} already exists. Replace it?"
    )
    return answer == QMessageBox.StandardButton.Yes


def hide_model_settings(settings: TrainSettings) -> None:
    """Hide the network-shape rows of ``settings``: a student's shape comes from its teacher
    (the same, or ``ModelConfig.student()`` with the strategy's smaller-student option)."""
    forms = settings.findChildren(QFormLayout)
    for (config, _name), box in settings.fields.items():
        if config != "model":
            continue
        for form in forms:
            label = form.labelForField(box)
            if label is not None:
                label.hide()
        box.hide()
    for (config, _name), switch in settings.switches.items():
        if config == "model":
            switch.hide()


def fill_instance_classes(combo: QComboBox, bundle: ModelBundle) -> None:
    """Offer "all foreground classes" and each foreground class of ``bundle`` (data: the
    class ids to split), keeping the current choice when it is still offered."""
    current = combo.currentText()
    combo.clear()
    combo.addItem(ALL_FOREGROUND, ())
    for class_id in bundle.class_ids[1:]:
        name = bundle.class_names.get(class_id, f"class {class_id}")
        combo.addItem(f"{class_id} {name}", (class_id,))
    combo.setCurrentIndex(max(0, combo.findText(current)))
