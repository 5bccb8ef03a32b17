"""The training settings form of the Teacher and Student widgets.

:class:`TrainSettings` is the form for :class:`~napari_distill.core.config.ModelConfig` and
:class:`~napari_distill.core.config.TrainConfig`: the main settings in view, the rest in an
"Advanced" collapsible; its defaults are the dataclasses' defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from napari_distill.core.config import (
    MAX_DOWNSAMPLE,
    MAX_MEMBERS,
    VIEW_AXES,
    ModelConfig,
    TrainConfig,
)

# (config, field, label, minimum, maximum, decimals, tooltip); decimals None = integer.
# An integer field with minimum 0 and a None default shows "auto" / "none" at 0.
MAIN_SETTINGS = (
    ("train", "steps", "Steps", 0, 1_000_000, None,
     "Optimiser steps. 'auto' sizes the run from the painted area and the device; early "
     "stopping ends it sooner when the validation score stops improving (with 3 or more "
     "validation slices)."),
    ("train", "patch_size", "Patch size (px)", 16, 2048, None,
     "Side of the square training patches in pixels at the network's scale (with "
     "Downsample N a patch covers N times as many of the image's pixels per side; clipped "
     "to the slice size)."),
    ("train", "batch_size", "Batch size", 1, 512, None,
     "Patches per step. Larger is steadier but needs more memory."),
    ("model", "base_channels", "Base channels", 2, 512, None,
     "Width of the U-Net's first level (doubled at every level down): capacity vs speed."),
    ("model", "members", "Teachers (ensemble)", 1, MAX_MEMBERS, None,
     "Networks trained side by side, each from its own start, holding out its own "
     "validation slices where it can (so each trains on slices another never saw); the "
     "prediction is the mean of their probabilities. Each costs a whole network's training "
     "and prediction time; several are steadier when one misses an organ by the luck of its "
     "training. The student is always one network."),
    ("model", "context_slices", "2.5D context slices", 0, 16, None,
     "Neighbouring slices on each side fed to the network (0 = plain 2D)."),
    ("model", "downsample", "Downsample (x)", 1, MAX_DOWNSAMPLE, None,
     "The network sees each slice reduced this many times per side and its labels are "
     "scaled back up. For slices much larger than the structures need (organs wider than "
     "about a third of a patch): more context and far less compute per slice; structures "
     "thinner than a few pixels at that scale are lost. 1 = full resolution."),
    ("train", "learning_rate", "Learning rate", 1e-6, 1.0, 5,
     "Peak AdamW learning rate (linear warm-up, then cosine decay)."),
)  # fmt: skip
ADVANCED_SETTINGS = (
    ("model", "depth", "Depth (levels)", 2, 8, None, "Resolution levels of the U-Net."),
    ("model", "dropout", "Dropout", 0.0, 0.9, 2, "Dropout in the deeper encoder stages."),
    ("train", "weight_decay", "Weight decay", 0.0, 1.0, 5, "AdamW weight decay."),
    ("train", "validation_fraction", "Validation fraction", 0.0, 0.9, 2,
     "Share of the annotated slices held out to validate (one at least with 3 or more). 0 "
     "trains on every annotated slice; the score shown is then the fit on those slices."),
    ("train", "validate_every", "Validate every (steps)", 1, 100_000, None,
     "Steps between validations (each draws a point on the validation curve)."),
    ("train", "patience", "Patience (validations)", 1, 10_000, None,
     "Validations without improvement before training stops early."),
    ("train", "foreground_fraction", "Foreground patches", 0.0, 1.0, 2,
     "Share of patches centred on a painted foreground pixel (small organs get seen)."),
    ("train", "dice_weight", "Dice weight", 0.0, 10.0, 2, "Loss = cross-entropy + w * soft Dice."),
    ("train", "max_minutes", "Time budget (min)", 0.0, 10_000.0, 1,
     "Stop after this many minutes of training (0 = no limit)."),
    ("train", "seed", "Seed", 0, 2**31 - 1, None, "Random seed (same seed, same run)."),
)  # fmt: skip
# (config, field, label, tooltip): switches shown with the main settings
MAIN_SWITCHES = (
    ("model", "views", "Views: slice the volume along all three axes",
     "For a volume (a CT stack, not a stack of separate fields): the teachers slice it "
     "along its three axes in turn. Those across the slices see each painted slice edge-on, "
     "as painted rows, and learn how the organs continue between the painted slices; the "
     "prediction is the mean of all three views. Needs at least 3 teachers (Teachers is "
     "raised to 3); costs 3 networks' training and prediction time."),
)  # fmt: skip
# (config, field, label, tooltip)
SWITCHES = (
    ("train", "augment", "Augment", "Flips, 90-degree rotations, intensity changes and noise."),
    ("train", "elastic", "Elastic deformation", "Elastic warps of the patches (slower)."),
    ("train", "class_weighting", "Class weighting",
     "Weigh rare classes up so small organs count."),
    ("train", "keep_final", "Keep final weights",
     "When the run completes its schedule, keep the final weights rather than the step that "
     "scored best on the few validation slices (a run stopped early keeps its best)."),
    ("model", "deep_supervision", "Deep supervision",
     "Also train a classification head on each intermediate decoder level (training only; "
     "prediction uses the main head)."),
)  # fmt: skip


class TrainSettings(QWidget):
    """A form for a :class:`ModelConfig` and a :class:`TrainConfig` with their defaults.

    Parameters
    ----------
    model_config, train_config:
        The values shown first (default: the dataclasses' defaults).
    parent:
        The parent widget.
    """

    def __init__(
        self,
        model_config: ModelConfig | None = None,
        train_config: TrainConfig | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.fields: dict[tuple[str, str], QSpinBox | QDoubleSpinBox] = {}
        self.switches: dict[tuple[str, str], QCheckBox] = {}
        main = QFormLayout()
        for spec in MAIN_SETTINGS:
            main.addRow(spec[2], self._field(*spec))
        for spec in MAIN_SWITCHES:
            main.addRow(self._switch(*spec))
        advanced = QWidget()
        advanced_form = QFormLayout(advanced)
        advanced_form.setContentsMargins(0, 0, 0, 0)
        for spec in ADVANCED_SETTINGS:
            advanced_form.addRow(spec[2], self._field(*spec))
        for spec in SWITCHES:
            advanced_form.addRow(self._switch(*spec))
        # Views need a member per axis: the Teachers field cannot go below that while ticked.
        self.switches[("model", "views")].toggled.connect(self._views_toggled)
        self.advanced = QCollapsible("Advanced")
        self.advanced.addWidget(advanced)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main)
        layout.addWidget(self.advanced)
        self.show_configs(model_config or ModelConfig(), train_config or TrainConfig())

    def _switch(self, config: str, name: str, text: str, tooltip: str) -> QCheckBox:
        box = QCheckBox(text)
        box.setToolTip(tooltip)
        self.switches[(config, name)] = box
        return box

    def _views_toggled(self, on: bool) -> None:
        self.fields[("model", "members")].setMinimum(VIEW_AXES if on else 1)

    def _field(self, config, name, label, low, high, decimals, tooltip) -> QWidget:
        if decimals is None:
            box = QSpinBox()
        else:
            box = QDoubleSpinBox()
            box.setDecimals(decimals)
            box.setSingleStep(10.0**-decimals if name == "learning_rate" else 0.05)
        box.setRange(low, high)
        if name == "steps":
            box.setSpecialValueText("auto")
        elif name == "max_minutes":
            box.setSpecialValueText("none")
        box.setToolTip(tooltip)
        box.setKeyboardTracking(False)
        self.fields[(config, name)] = box
        return box

    def show_configs(self, model_config: ModelConfig, train_config: TrainConfig | None) -> None:
        """Show the values of ``model_config`` and ``train_config`` (None: keep the train
        settings)."""
        configs = {"model": model_config, "train": train_config}
        for (config, name), box in self.fields.items():
            if configs[config] is not None:
                value = getattr(configs[config], name)
                box.setValue(0 if value is None else value)
        for (config, name), box in self.switches.items():
            if configs[config] is not None:
                box.setChecked(bool(getattr(configs[config], name)))

    def configs(self) -> tuple[ModelConfig, TrainConfig]:
        """The settings as configs (0 in "auto"/"none" fields becomes None).

        Raises
        ------
        ValueError
            If the configs reject a combination of values.
        """
        values: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for (config, name), box in self.fields.items():
            value = box.value()
            if name in ("steps", "max_minutes") and value == 0:
                value = None
            values[config][name] = value
        for (config, name), box in self.switches.items():
            values[config][name] = box.isChecked()
        return (
            dataclasses.replace(ModelConfig(), **values["model"]),
            dataclasses.replace(TrainConfig(), **values["train"]),
        )
