"""The Student widget's strategy picker: a combo box of strategies and the chosen one's
settings form (:class:`~napari_distill._widgets.common.config_form.ConfigForm`, built from the
strategy's config dataclass)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QComboBox, QGroupBox, QVBoxLayout, QWidget

from napari_distill._widgets.common.config_form import ConfigForm, field_label, field_tooltips
from napari_distill.core.config import from_dict

__all__ = ["ConfigForm", "StrategyPicker", "field_label", "field_tooltips"]


class StrategyPicker(QGroupBox):
    """A combo box of strategies (descriptions as tooltips) and the chosen one's form.

    Parameters
    ----------
    strategies:
        ``{name: spec}`` with ``spec.title``, ``spec.description`` and ``spec.config_class``
        (:data:`napari_distill.core.strategies.STRATEGIES`).
    parent:
        The parent widget.
    """

    def __init__(self, strategies: Mapping[str, Any], parent: QWidget | None = None) -> None:
        super().__init__("Strategy", parent)
        self.strategies = dict(strategies)
        self.combo = QComboBox()
        for spec in self.strategies.values():
            self.combo.addItem(spec.title, spec.name)
            index = self.combo.count() - 1
            self.combo.setItemData(index, spec.description, Qt.ItemDataRole.ToolTipRole)
        self.form = ConfigForm()
        layout = QVBoxLayout(self)
        layout.addWidget(self.combo)
        layout.addWidget(self.form)
        self.combo.currentIndexChanged.connect(lambda _index: self._show(None))
        self._show(None)

    def name(self) -> str:
        """The chosen strategy's name."""
        return str(self.combo.currentData())

    def _show(self, values: Any) -> None:
        spec = self.strategies[self.name()]
        self.combo.setToolTip(spec.description)  # a tooltip: the dock is tall already
        self.form.set_config_class(spec.config_class, values)
        link_student_size(self.form)

    def show_saved(self, name: str | None, values: Mapping[str, Any] | None) -> None:
        """Choose strategy ``name`` and show its saved settings (a checkpoint's
        ``extra["strategy"]`` and ``extra["strategy_config"]``); unknown names are ignored."""
        if name not in self.strategies:
            return
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(self.combo.findData(name))
        self.combo.blockSignals(False)
        self._show(from_dict(self.strategies[name].config_class, dict(values or {})))


def link_student_size(form: ConfigForm) -> None:
    """A ``kd`` form's student size: *Smaller* and *Larger* exclude each other, and either one
    unticks and greys out *Start from the teacher's weights* (their shapes differ from the
    teacher's), which comes back as it was when both are off. Other forms are left alone."""
    fields = form.fields
    if not {"smaller_student", "larger_student", "init_from_teacher"} <= set(fields):
        return
    smaller, larger = fields["smaller_student"], fields["larger_student"]
    start = fields["init_from_teacher"]
    tooltip = start.toolTip()
    remembered = [start.isChecked()]

    def sync(changed: QCheckBox, other: QCheckBox) -> None:
        if changed.isChecked() and other.isChecked():
            other.setChecked(False)  # its own signal syncs the start box
            return
        resized = smaller.isChecked() or larger.isChecked()
        if resized and start.isEnabled():
            remembered[0] = start.isChecked()
            start.setChecked(False)
        elif not resized and not start.isEnabled():
            start.setChecked(remembered[0])
        start.setEnabled(not resized)
        start.setToolTip(RESIZED_TIP if resized else tooltip)

    smaller.toggled.connect(lambda _on: sync(smaller, larger))
    larger.toggled.connect(lambda _on: sync(larger, smaller))
    sync(smaller, larger)


RESIZED_TIP = (
    "A smaller or larger student has other shapes than the teacher's network: it is trained "
    "from scratch."
)
