"""The Teacher widget's plan from the data: a one-line summary of the planned settings, their
reasons in its tooltip, and the form filled with them.

The plan is :func:`napari_distill.core.training.plan_teacher` of the chosen layers (the image
layer's ``scale`` is the voxel spacing); this module only reads the layers and shows it. The
fields the user changed are kept and passed to the plan as given (:meth:`TrainSettings.given`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Image, Labels
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel

from napari_distill._widgets.common.handoff import image_data, spatial_shape
from napari_distill._widgets.common.train_settings import TrainSettings
from napari_distill.core.device import select_device
from napari_distill.core.preprocess import annotated_slices
from napari_distill.core.training import TeacherPlan, measure, plan_teacher

SHORT = {  # how each setting reads in the one-line summary
    "downsample": "scale 1/{}",
    "views": "views {}",
    "members": "{} teacher(s)",
    "validation_fraction": "validation {}",
    "batch_size": "batch {}",
    "clip_to_foreground": "clip {}",
}


def layer_plan(
    image: Image, labels: Any, device: str, settings: TrainSettings, names: dict | None = None
) -> TeacherPlan:
    """The plan for ``image`` (a layer) and painted ``labels`` (an array) with the settings
    the user changed kept (raises ValueError for settings the configs refuse)."""
    spatial = len(spatial_shape(image))
    spacing = tuple(float(s) for s in image.scale)[-spatial:]
    fingerprint = measure(image_data(image), labels, spacing, rgb=image.rgb)
    model_config, train_config = settings.configs()
    return plan_teacher(
        fingerprint,
        select_device(device),
        given=settings.given(),
        model_config=model_config,
        train_config=train_config,
        class_names=names,
        one_axis=settings.views_unavailable,
    )


class PlanLine(QLabel):
    """``Plan from the data: scale 1/2, views on, ...``; hovering shows every reason.

    :meth:`schedule` recomputes it shortly after the layers or the painting change (once for
    a burst of brush strokes) and fills the form's planned fields the user has not changed.
    """

    def __init__(self, settings: TrainSettings) -> None:
        super().__init__()
        self.setWordWrap(True)
        self.settings = settings
        self.plan: TeacherPlan | None = None
        self._inputs: tuple[Image | None, Labels | None, str, dict] = (None, None, "auto", {})
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(300)
        self._timer.timeout.connect(self.refresh)

    def schedule(self, image: Image | None, labels: Labels | None, device: str, names) -> None:
        self._inputs = (image, labels, device, names)
        self._timer.start()

    def refresh(self) -> None:
        """Plan again from the layers given last, now."""
        image, labels, device, names = self._inputs
        self.plan = None
        if image is None or labels is None:
            self.setText("")
            return
        data = np.asarray(labels.data)
        if len(annotated_slices(data)) == 0:
            self.setText("Plan from the data: once a slice is painted.")
            self.setToolTip("")
            return
        try:
            self.plan = layer_plan(image, data, device, self.settings, names)
        except ValueError as error:
            self.setText(f"No plan: {error}")
            return
        self.settings.show_plan(self.plan)
        shown = [
            SHORT[d.setting].format(d.value_text()) + ("*" if d.source == "user" else "")
            for d in self.plan.decisions
            if d.setting in SHORT
        ]
        self.setText("Plan from the data: " + ", ".join(shown) + " (hover for why; * yours)")
        self.setToolTip("\n\n".join(self.plan.lines()))
