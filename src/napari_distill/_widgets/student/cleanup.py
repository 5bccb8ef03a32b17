"""The clean-up row under a Predict button: one piece per organ, and no pieces below a size.

Reads back an :class:`~napari_distill.core.config.InstanceConfig` in ``"semantic"`` mode, the
same clean-up ``napari-distill predict --largest-component IDS --min-size N`` applies
(:func:`~napari_distill.core.evaluation.clean_semantic`). The organs kept to one piece are
chosen one by one from a menu of the model's classes, because "every class" deletes one eye of
a pair and all but one vertebra of a column.
"""

from __future__ import annotations

from qtpy.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QMenu,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QWidget,
)

from napari_distill.core.config import InstanceConfig
from napari_distill.core.models import ModelBundle

NO_CLASS = "choose organs"


class CleanupRow(QWidget):
    """*one piece of: [organs]* and *drop pieces under: [N px]*, in two rows."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.largest_box = QCheckBox("one piece of:")
        self.largest_box.setToolTip(
            "Keep only the largest connected piece (in 3D for a stack) of each organ ticked in "
            "the menu; stray islands of it become background. Tick only organs that are one "
            "body: a pair of eyes or a column of vertebrae would lose all pieces but one."
        )
        self.class_button = QToolButton()
        self.class_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        # A long list of organs must not widen the dock: the button takes the width it is
        # given, and its tooltip names them all.
        self.class_button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.class_button.setMinimumWidth(80)
        self.class_menu = QMenu(self.class_button)
        self._names: dict[int, str] = {}  # of the classes the menu offers
        self.class_button.setMenu(self.class_menu)
        self.min_size = QSpinBox()
        self.min_size.setRange(0, 10**9)
        self.min_size.setSingleStep(10)
        self.min_size.setSuffix(" px")
        self.min_size.setSpecialValueText("off")
        tooltip = (
            "Remove connected pieces of any class smaller than this many pixels (voxels in a "
            "stack); off (0) keeps everything."
        )
        self.min_size.setToolTip(tooltip)
        min_size_label = QLabel("drop pieces under:")
        min_size_label.setToolTip(tooltip)
        # Two rows: on one, the three controls are wider than napari's dock.
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.largest_box, 0, 0)
        layout.addWidget(self.class_button, 0, 1)
        layout.addWidget(min_size_label, 1, 0)
        layout.addWidget(self.min_size, 1, 1)
        layout.setColumnStretch(1, 1)
        self.largest_box.toggled.connect(self.class_button.setEnabled)
        self.class_button.setEnabled(False)
        self._update_text()

    def set_classes(self, bundle: ModelBundle) -> None:
        """Offer the foreground classes of ``bundle``, keeping the ticks of those still there."""
        ticked = set(self.chosen_classes())
        self.class_menu.clear()
        self._names = {}
        for class_id in bundle.class_ids[1:]:
            name = bundle.class_names.get(class_id, f"class {class_id}")
            self._names[class_id] = name
            action = self.class_menu.addAction(f"{class_id} {name}")
            action.setCheckable(True)
            action.setChecked(class_id in ticked)
            action.setData(class_id)
            action.toggled.connect(self._update_text)
        self._update_text()

    def set_chosen(self, class_ids: tuple[int, ...]) -> None:
        """Tick exactly ``class_ids`` (those the menu offers)."""
        for action in self.class_menu.actions():
            action.setChecked(action.data() in class_ids)

    def chosen_classes(self) -> tuple[int, ...]:
        """The class ids ticked in the menu."""
        return tuple(int(a.data()) for a in self.class_menu.actions() if a.isChecked())

    def config(self) -> InstanceConfig:
        """The clean-up asked for (does nothing when neither part is on)."""
        classes = self.chosen_classes() if self.largest_box.isChecked() else ()
        return InstanceConfig(
            keep_largest_component=bool(classes),
            largest_component_classes=classes,
            min_size=self.min_size.value(),
        )

    def _update_text(self) -> None:
        names = [self._names[class_id] for class_id in self.chosen_classes()]
        self.class_button.setText(", ".join(names) if names else NO_CLASS)
        self.class_button.setToolTip(
            f"Kept to their largest piece: {', '.join(names)}."
            if names
            else "Choose the organs kept to their largest piece (those that are one body)."
        )
