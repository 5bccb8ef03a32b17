"""The training settings form of the Teacher and Student widgets.

:class:`TrainSettings` is the form for :class:`~napari_distill.core.config.ModelConfig` and
:class:`~napari_distill.core.config.TrainConfig`, plus the CPU threads a run may use. In front,
the choices a biologist makes (how long to train, how many teachers, views); the rest in an
*Advanced* collapsible that starts closed, every field with a tooltip saying in plain words
what it changes and when to touch it. Its defaults are the dataclasses' defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
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
from napari_distill.core.device import cpu_count
from napari_distill.core.training.plan import PLANNED, TeacherPlan

# (config, field, label, minimum, maximum, decimals, tooltip); decimals None = integer.
# An integer field with minimum 0 and a None default shows "auto" / "none" at 0.
MAIN_SETTINGS = (
    ("train", "steps", "Steps", 0, 1_000_000, None,
     "How long the network trains, in training steps. 'auto' picks a length that suits your "
     "painted slices and the device (on a CPU 2,000-4,000 steps for a teacher, 500-1,000 for "
     "a student that starts from its teacher), and stops sooner once the score on the "
     "held-out slices stops improving (when 3 or more slices are held out). Type a number for "
     "a quick try or a longer run."),
    ("train", "max_minutes", "Time limit (min)", 0.0, 10_000.0, 1,
     "Stop training after this many minutes and keep the best model so far ('none': no "
     "limit). Use it when you need a result by a given time."),
    ("model", "members", "Teachers (ensemble)", 1, MAX_MEMBERS, None,
     "How many teachers train side by side; their predictions are averaged. Each holds out "
     "its own painted slices to check itself where it can, so together they learn from all of "
     "them. Three are steadier than one (one teacher may miss an organ by the luck of its "
     "training) but take three times as long to train and to predict: worth it on a GPU, an "
     "option on a CPU. The student is always one network."),
)  # fmt: skip
# (config, field, label, tooltip): switches shown with the main settings
MAIN_SWITCHES = (
    ("model", "views", "Views: slice the volume along all three axes",
     "For a volume (a CT stack, not a stack of separate fields): the teachers look at it along "
     "its three axes in turn. Those that cut across your painted slices see them edge-on, as "
     "painted rows, and learn how the organs continue between the slices you painted; the "
     "prediction is the mean of the three views. Needs at least 3 teachers (Teachers is raised "
     "to 3); costs three networks' training and prediction time."),
)  # fmt: skip
ADVANCED_SETTINGS = (
    ("train", "patch_size", "Patch size (px)", 16, 2048, None,
     "Side of the square pieces of slice the network learns from, in pixels (with Downsample "
     "N, N times more of the image per side). Around each pixel the network sees about this "
     "much. If the organs you paint are wider than about a third of it, prefer Downsample; "
     "lower it only when memory runs out."),
    ("train", "batch_size", "Batch size", 1, 512, None,
     "How many pieces of slice each training step learns from. More gives steadier steps but "
     "each step is slower and needs more memory: lower it if memory runs out."),
    ("model", "base_channels", "Base channels", 2, 512, None,
     "The size of the network. Larger can learn finer detail but trains and predicts more "
     "slowly; smaller is faster. Keep the default unless training is too slow."),
    ("model", "depth", "Depth (levels)", 2, 8, None,
     "How many times the network halves the slice to see wider surroundings. More levels see "
     "larger structures and cost more memory. Rarely worth changing."),
    ("model", "context_slices", "2.5D context slices", 0, 16, None,
     "How many neighbouring slices on each side the network sees with each slice (0: the "
     "slice alone). 1 or 2 can help it follow organs through a CT stack; keep 0 for "
     "separate images such as Pap smear fields."),
    ("model", "downsample", "Downsample (x)", 1, MAX_DOWNSAMPLE, None,
     "Shrink each slice this many times per side before the network sees it; the labels come "
     "back at full size. For slices much larger than their organs (organs wider than about a "
     "third of a patch): the network sees more around each pixel and runs much faster, but "
     "structures thinner than a few pixels at the reduced size are lost. 1 = full size."),
    ("train", "learning_rate", "Learning rate", 1e-6, 1.0, 5,
     "How large a correction the network makes at each step (the peak: it rises at the start "
     "and falls towards the end). Lower it if the loss curve jumps about or climbs; otherwise "
     "leave it."),
    ("model", "dropout", "Dropout", 0.0, 0.9, 2,
     "While training, randomly silence this share of the network's deeper units, so it does "
     "not learn your few slices by heart. Rarely worth changing."),
    ("train", "weight_decay", "Weight decay", 0.0, 1.0, 5,
     "Keeps the network's weights small, another guard against learning the painted slices "
     "by heart. Rarely worth changing."),
    ("train", "validation_fraction", "Validation fraction", 0.0, 0.9, 2,
     "Share of your painted slices held out to check the network on slices it did not learn "
     "from (at least one when you painted 3 or more). 0 trains on every painted slice: "
     "slightly better with very few slices, but the curve then shows only how well it fits "
     "them."),
    ("train", "validate_every", "Validate every (steps)", 1, 100_000, None,
     "How often the held-out slices are checked, in steps; each check adds a point to the "
     "validation curve and takes a little time."),
    ("train", "patience", "Patience (validations)", 1, 10_000, None,
     "How many checks in a row without improvement before training stops early (only with 3 "
     "or more held-out slices). Raise it to let a slowly improving run go on."),
    ("train", "foreground_fraction", "Foreground patches", 0.0, 1.0, 2,
     "Share of the training pieces centred on something you painted rather than anywhere in "
     "the slice, so that small organs are seen often enough. Raise it if small organs are "
     "missed."),
    ("train", "dice_weight", "Dice weight", 0.0, 10.0, 2,
     "How much the training counts the overlap of whole organs against getting each pixel "
     "right; the overlap helps small organs. Rarely worth changing."),
    ("train", "seed", "Seed", 0, 2**31 - 1, None,
     "Fixes the random choices (which slices are held out, how the network starts): the same "
     "seed repeats a run. If a teacher misses an organ, another seed is another try."),
)  # fmt: skip
# (config, field, label, tooltip): switches in the Advanced section
SWITCHES = (
    ("train", "augment", "Augment",
     "Also show the network flipped, rotated, brighter, darker and noisier copies of your "
     "slices, so it copes with what you did not paint. Leave it on."),
    ("train", "elastic", "Elastic deformation",
     "Also bend the slices slightly, as tissue varies in shape. Slower; try it when the organs "
     "vary in shape from slice to slice."),
    ("train", "class_weighting", "Class weighting",
     "Count rare classes (small organs, nuclei) more, so the large ones do not drown them. "
     "Leave it on."),
    ("train", "keep_final", "Keep final weights",
     "When the run completes, keep the final network rather than the step that scored best on "
     "the few held-out slices (with few slices that 'best' is mostly luck). A run stopped "
     "early keeps its best."),
    ("train", "clip_to_foreground", "Clip to the painted intensities",
     "Map the intensities of what you painted (0.5-99.5 %) to the network's range and clip "
     "the rest, as is usual for CT: when most of the image is air or other unpainted matter, "
     "the painted tissues otherwise share a sliver of the range. Planned from the data."),
    ("model", "deep_supervision", "Deep supervision",
     "While training, also ask the network for the labels at half and quarter size, which "
     "helps it with few painted slices; prediction is unchanged. Leave it on."),
)  # fmt: skip
THREADS_TOOLTIP = (
    "How many processor cores training may use on the CPU. 'auto' uses all but one, so napari "
    "stays responsive while it trains; fewer leave cores free for other programs. No effect "
    "when training on a GPU."
)


class TrainSettings(QWidget):
    """A form for a :class:`ModelConfig` and a :class:`TrainConfig` with their defaults.

    Parameters
    ----------
    model_config, train_config:
        The values shown first (default: the dataclasses' defaults).
    parent:
        The parent widget.

    Attributes
    ----------
    fields, switches:
        ``{(config, field): editor}``, config ``"model"`` or ``"train"``.
    threads:
        The CPU threads box (0 shows "auto"); read it with :meth:`cpu_threads`.
    advanced:
        The collapsible *Advanced* section (closed at first).
    edited:
        The ``(config, field)`` the user changed since the form was filled: a plan from the
        data (:meth:`show_plan`) leaves them alone, and :meth:`given` passes them to it.
    views_unavailable:
        Why Views cannot be used now (:meth:`set_views_unavailable`), else None.
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
        self.edited: set[tuple[str, str]] = set()
        self.views_unavailable: str | None = None
        self._views_before: tuple[bool, int] = (False, 1)  # restored when available again
        self._filling = False  # values set by the form itself are not the user's edits
        main = QFormLayout()
        for spec in MAIN_SETTINGS:
            main.addRow(self._label(spec[2], spec[6]), self._field(*spec))
        for spec in MAIN_SWITCHES:
            main.addRow(self._switch(*spec))
        advanced = QWidget()
        advanced_form = QFormLayout(advanced)
        advanced_form.setContentsMargins(0, 0, 0, 0)
        for spec in ADVANCED_SETTINGS:
            advanced_form.addRow(self._label(spec[2], spec[6]), self._field(*spec))
        self.threads = QSpinBox()
        self.threads.setRange(0, cpu_count())
        self.threads.setSpecialValueText("auto")
        self.threads.setToolTip(THREADS_TOOLTIP)
        advanced_form.addRow(self._label("CPU threads", THREADS_TOOLTIP), self.threads)
        for spec in SWITCHES:
            advanced_form.addRow(self._switch(*spec))
        # Views need a member per axis: the Teachers field cannot go below that while ticked.
        self.switches[("model", "views")].toggled.connect(self._views_toggled)
        self.advanced = QCollapsible("Advanced")
        self.advanced.setToolTip(
            "The network's size and how it trains: the defaults suit most data."
        )
        self.advanced.addWidget(advanced)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main)
        layout.addWidget(self.advanced)
        self.show_configs(model_config or ModelConfig(), train_config or TrainConfig())
        for key, box in self.fields.items():
            box.valueChanged.connect(lambda _=None, key=key: self._edited(key))
        for key, box in self.switches.items():
            box.toggled.connect(lambda _=None, key=key: self._edited(key))

    def _edited(self, key: tuple[str, str]) -> None:
        if not self._filling:
            self.edited.add(key)

    def show_plan(self, plan: TeacherPlan) -> None:
        """Fill the planned fields the user has not changed with the plan's values."""
        self._filling = True
        try:
            for decision in plan.decisions:
                key = (PLANNED[decision.setting], decision.setting)
                if key in self.edited:
                    continue
                if key in self.switches:
                    self.switches[key].setChecked(bool(decision.value))
                elif key in self.fields:
                    self.fields[key].setValue(0 if decision.value is None else decision.value)
        finally:
            self._filling = False

    def given(self) -> dict[str, Any]:
        """``{setting: value}`` of the planned settings the user changed (for the plan;
        not Views while they are unavailable)."""
        model, train = self.configs()
        configs = {"model": model, "train": train}
        return {
            name: getattr(configs[config], name)
            for config, name in self.edited
            if PLANNED.get(name) == config
            and not (name == "views" and self.views_unavailable is not None)
        }

    def set_views_unavailable(self, reason: str | None) -> None:
        """Untick and grey out Views, saying ``reason`` when hovered (several images are
        trained), with Teachers back at its default unless the user set it; or (None) give
        both back as they were."""
        views, members = self.switches[("model", "views")], self.fields[("model", "members")]
        if reason is not None and self.views_unavailable is not None:
            views.setToolTip(f"Not used for several images: {reason}.")
        if (reason is None) == (self.views_unavailable is None):
            self.views_unavailable = reason
            return
        self._filling = True  # not the user's edits: the plan fills around them as before
        try:
            if reason is not None:
                self._views_before = (views.isChecked(), members.value())
                views.setChecked(False)
                if ("model", "members") not in self.edited:
                    members.setValue(ModelConfig().members)  # raised for views, not asked
                views.setToolTip(f"Not used for several images: {reason}.")
            else:
                views.setChecked(self._views_before[0])
                members.setValue(self._views_before[1])
                views.setToolTip(MAIN_SWITCHES[0][3])
        finally:
            self._filling = False
        views.setEnabled(reason is None)
        self.views_unavailable = reason

    @staticmethod
    def _label(text: str, tooltip: str) -> QLabel:
        label = QLabel(text)
        label.setToolTip(tooltip)  # hovering the name explains it as well as the box
        return label

    def _switch(self, config: str, name: str, text: str, tooltip: str) -> QCheckBox:
        box = QCheckBox(text)
        box.setToolTip(tooltip)
        self.switches[(config, name)] = box
        return box

    def _views_toggled(self, on: bool) -> None:
        filling, self._filling = self._filling, True  # Teachers raised for views: not an edit
        try:
            self.fields[("model", "members")].setMinimum(VIEW_AXES if on else 1)
        finally:
            self._filling = filling

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
            box.setSingleStep(5.0)
        box.setToolTip(tooltip)
        box.setKeyboardTracking(False)
        self.fields[(config, name)] = box
        return box

    def show_configs(self, model_config: ModelConfig, train_config: TrainConfig | None) -> None:
        """Show the values of ``model_config`` and ``train_config`` (None: keep the train
        settings)."""
        self._filling = True
        try:
            self._show(model_config, train_config)
        finally:
            self._filling = False
        self.edited.clear()  # a loaded model's settings are the form's, not edits

    def _show(self, model_config: ModelConfig, train_config: TrainConfig | None) -> None:
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

    def cpu_threads(self) -> int | None:
        """The CPU threads chosen, None for automatic (the widgets pass it to
        :func:`~napari_distill._widgets.common.device.use_cpu_threads`)."""
        return self.threads.value() or None
