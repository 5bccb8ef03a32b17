"""The Teacher widget's *Propagation* box: labels without a model, and the teacher against them.

*Propagate* fills the unpainted slices from the painted ones
(:func:`napari_distill.core.inference.propagate`, nearest painted slice or optical flow) and
adds a new Labels layer (role ``"propagation"`` in its hand-off dict; a layer of the same name
is never replaced: the new one gets a new name). *Compare* predicts the painted slices the
teacher's networks held out, by them and by propagation from the other painted slices
(:func:`napari_distill.core.inference.compare_with_propagation`), and shows per class both
scores and which source the pipeline uses; it runs by itself after a training run ends when
it is quick (:func:`~napari_distill.core.inference.comparison.quick_method`). Both run in the
widget's :class:`~napari_distill._widgets.common.workers.WorkerRunner`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_distill._widgets.common.handoff import (
    METADATA_KEY,
    SourceLayer,
    add_layer_data,
    image_data,
    output_name,
)
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.config import PropagationConfig
from napari_distill.core.evaluation import Comparison
from napari_distill.core.inference import compare_with_propagation, propagate
from napari_distill.core.inference.comparison import quick_method
from napari_distill.core.models import ModelBundle
from napari_distill.core.preprocess import annotated_slices, as_stack
from napari_distill.core.training import TrainingRun, stored_splits

PROPAGATION_ROLE = "propagation"
METHODS = {
    "flow": "optical flow: the painted labels carried slice by slice, blended by distance",
    "nearest": "copy the nearest painted slice (instant)",
}


def propagation_layer(
    image: Any, labels: np.ndarray, method: str, source: SourceLayer, rgb: bool
) -> Generator[Any, None, list]:
    """Propagate the painted ``labels``; return the layer data of a new Labels layer."""
    result = yield from propagate(image, labels, PropagationConfig(method=method), rgb=rgb)
    data = result.labels[0] if source.is_2d else result.labels
    metadata = {
        METADATA_KEY: {
            "role": PROPAGATION_ROLE,
            "method": method,
            "probabilities": result.probabilities,
            "class_ids": result.class_ids,
            "image_layer": source.name,
        }
    }
    kwargs = {"scale": source.scale, "translate": source.translate, "metadata": metadata}
    return [(data, {"name": output_name(source.name, f"{method} propagated"), **kwargs}, "labels")]


def comparison_html(comparison: Comparison) -> str:
    """The comparison as rich text: one sentence, then per class both scores and the use."""
    text = f"<p>{html.escape(comparison.summary())}</p>"
    if not comparison.fair:
        return text

    def number(value: float) -> str:
        return "n/a" if math.isnan(value) else f"{value:.2f}"

    rows = "".join(
        f"<tr><td>{html.escape(row['name'])}</td><td align='right'>"
        f"{number(row['teacher_iou'])}</td><td align='right'>{number(row['propagation_iou'])}"
        f"</td><td>{row['used']}</td></tr>"
        for row in comparison.rows()
    )
    head = "<tr><th align='left'>class</th><th>teacher</th><th>propagation</th><th>used</th></tr>"
    caption = "IoU on the painted slices the teacher held out"
    return f"{text}<p>{caption}:</p><table cellspacing='4'>{head}{rows}</table>"


class PropagationPanel(QGroupBox):
    """Propagate and Compare (see the module); the owner passes in what it holds.

    Parameters
    ----------
    viewer:
        Where the propagated layer goes.
    runner:
        The owner's runner: one computation at a time for the whole widget.
    layers:
        Returns the chosen (image layer, labels layer), either possibly None.
    bundle:
        Returns the teacher (None before one is trained or loaded).
    device:
        Returns the device to predict on.
    changed:
        Called when a task starts or ends (the owner refreshes its buttons).
    """

    def __init__(
        self,
        viewer: Any,
        runner: WorkerRunner,
        layers: Callable[[], tuple[Any, Any]],
        bundle: Callable[[], ModelBundle | None],
        device: Callable[[], str],
        changed: Callable[[], None],
    ) -> None:
        super().__init__("Propagation (no model)")
        self.viewer, self.runner = viewer, runner
        self._layers, self._bundle, self._device, self._changed = layers, bundle, device, changed
        self.comparison: Comparison | None = None
        self.busy = False  # one of this box's tasks is running in the owner's runner
        self._compared_run: int | None = None
        self.method_box = QComboBox()
        for method, help_text in METHODS.items():
            self.method_box.addItem(method)
            self.method_box.setItemData(
                self.method_box.count() - 1, help_text, Qt.ItemDataRole.ToolTipRole
            )
        self.method_box.setToolTip(
            "flow: the painted labels carried along the optical flow between neighbouring "
            "slices; nearest: each slice copies its nearest painted slice."
        )
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip(
            "Fill the unpainted slices from the painted ones, without a model; adds a new "
            "labels layer. A baseline the teacher must beat."
        )
        self.compare_button = QPushButton("Compare with teacher")
        self.compare_button.setToolTip(
            "Score the teacher and propagation on the painted slices the teacher never trained "
            "on, per class, and show which the pipeline uses for each."
        )
        self.result_label = QLabel("Train a teacher to compare it with propagation.")
        self.result_label.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.method_box)
        row.addWidget(self.propagate_button)
        row.addWidget(self.compare_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.result_label)
        self.propagate_button.clicked.connect(self.propagate)
        self.compare_button.clicked.connect(self.compare)

    def method(self) -> str:
        """The chosen propagation method."""
        return self.method_box.currentText()

    def update_buttons(self, busy: bool) -> None:
        """Enable the buttons that can run now."""
        self.method_box.setEnabled(not busy)
        self.propagate_button.setEnabled(not busy)
        self.compare_button.setEnabled(not busy and self._bundle() is not None)

    def _painted(self) -> tuple[Any, np.ndarray] | None:
        image, labels = self._layers()
        if image is None or labels is None:
            show_error("Choose an image and a labels layer of the same shape first.")
            return None
        painted = np.array(labels.data, copy=True)  # the user may keep painting meanwhile
        if len(annotated_slices(painted)) == 0:
            show_error(f"Nothing is painted in '{labels.name}': paint a slice to propagate.")
            return None
        return image, painted

    def propagate(self) -> None:
        """Propagate the painted slices into a new labels layer (the Propagate button)."""
        chosen = self._painted()
        if chosen is None or self.runner.is_running:
            return
        image, painted = chosen
        self.runner.start(
            propagation_layer, image_data(image), painted, self.method(),
            SourceLayer.from_layer(image), image.rgb,
            on_return=self._on_propagated, on_finish=self._on_finish,
            progress=lambda p: (p.done, p.total), description="Propagation",
            error_message="Propagation failed",
        )  # fmt: skip
        self.result_label.setText(f"Propagating ({self.method()})...")
        self.busy = True
        self._changed()

    def _on_propagated(self, layer_data: list) -> None:
        added = add_layer_data(self.viewer, layer_data)
        self.result_label.setText(f"Added {', '.join(repr(layer.name) for layer in added)}.")

    def compare(self) -> None:
        """Compare the teacher with propagation (the Compare button)."""
        chosen = self._painted()
        bundle = self._bundle()
        if chosen is None or bundle is None or self.runner.is_running:
            return
        image, painted = chosen
        config = PropagationConfig(method=self.method())
        self.runner.start(
            compare_with_propagation, bundle, image_data(image), painted, stored_splits(bundle),
            config, device=self._device(), rgb=image.rgb,
            on_return=self._on_compared, on_finish=self._on_finish,
            progress=lambda p: (p.done, p.total), description="Teacher vs propagation",
            error_message="Comparison failed",
        )  # fmt: skip
        self.result_label.setText(f"Comparing the teacher with {self.method()} propagation...")
        self.busy = True
        self._changed()

    def _on_finish(self, outcome: str) -> None:
        self.busy = False
        if outcome != "returned":
            self.result_label.setText(f"Propagation box: {outcome}.")
        self._changed()

    def compare_after(self, run: TrainingRun | None) -> None:
        """Compare once after a run that ended by itself, when the chosen method is quick."""
        bundle = self._bundle()
        ended = run is not None and run.stop_reason in ("completed", "early_stopping")
        if not ended or bundle is None or id(run) == self._compared_run:
            return
        self._compared_run = id(run)
        image, labels = self._layers()
        if image is None or labels is None or self.runner.is_running:
            return
        if self.method() == "flow":
            shape = as_stack(image_data(image), image.rgb).shape
            quick, why = quick_method(bundle, shape, np.asarray(labels.data), stored_splits(bundle))
            if quick != "flow":
                self.result_label.setText(f"Not compared by itself: {why}. Click Compare.")
                return
        self.compare()

    def _on_compared(self, comparison: Comparison) -> None:
        self.comparison = comparison
        self.result_label.setText(comparison_html(comparison))
