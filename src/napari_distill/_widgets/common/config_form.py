"""A settings form built from a frozen config dataclass (a student strategy's settings, the
cell model's training settings).

Nothing here knows a particular config: the rows come from ``dataclasses.fields`` of the
class, so a strategy added to :data:`napari_distill.core.strategies.STRATEGIES` gets its form
without any widget change.

For every field:

- the **editor** follows its type: ``bool`` a check box, ``int`` / ``float`` a spin box
  (``X | None`` adds a "none" entry below the minimum), ``str`` a line edit, ``Literal`` and
  ``Enum`` a combo box, ``tuple[int, ...]`` / ``tuple[float, ...]`` a comma-separated line edit;
  other types are shown read-only and keep their default;
- the **label** is ``metadata["label"]`` or the field name in words;
- the **tooltip** is ``metadata["help"]`` (or ``"doc"`` / ``"description"``), else the field's
  entry in the class docstring's ``Attributes`` / ``Parameters`` section, else the comment at
  the end of the field's line in the source;
- ``metadata["min"]`` / ``metadata["max"]`` bound a number (default: ``[0, 1e9]`` when the
  default is not negative). The config's own ``__post_init__`` checks stay the judge: a
  rejected value raises ``ValueError`` from :meth:`ConfigForm.config`.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import io
import logging
import math
import re
import tokenize
import types
import typing
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

logger = logging.getLogger(__name__)

_BIG = 1e9
_NONE_TEXT = "none"


def field_label(field: dataclasses.Field) -> str:
    """``metadata["label"]``, else ``"kd_on_annotated"`` -> ``"Kd on annotated"``."""
    label = field.metadata.get("label")
    if label:
        return str(label)
    words = field.name.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def _docstring_entries(config_class: type) -> dict[str, str]:
    """``{name: description}`` from a NumPy-style ``Attributes`` / ``Parameters`` section."""
    doc = inspect.getdoc(config_class) or ""
    entries: dict[str, str] = {}
    in_section = False
    current: str | None = None
    lines = doc.splitlines()
    for number, line in enumerate(lines):
        underline = lines[number + 1] if number + 1 < len(lines) else ""
        if re.fullmatch(r"-{3,}", underline.strip()):
            in_section = line.strip() in ("Attributes", "Parameters")
            current = None
            continue
        if not in_section or re.fullmatch(r"-{3,}", line.strip()):
            continue
        header = re.match(r"^([A-Za-z_][\w, ]*?)\s*(:.*)?$", line)
        if line and not line[0].isspace() and header:
            names = [n.strip() for n in header.group(1).split(",")]
            current = ",".join(names)
            for name in names:
                entries.setdefault(name, "")
        elif current and line.strip():
            for name in current.split(","):
                entries[name] = (entries[name] + " " + line.strip()).strip()
    return {name: text for name, text in entries.items() if text}


def _source_comments(config_class: type) -> dict[str, str]:
    """``{name: comment}`` from ``name: type = default  # comment`` lines of the class body."""
    try:
        source = inspect.getsource(config_class)
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    lines = source.splitlines()
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError):
        return {}
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        line = lines[token.start[0] - 1]
        match = re.match(r"^\s+([A-Za-z_]\w*)\s*:", line)
        if match and token.start[1] > match.end():
            comments[match.group(1)] = token.string.lstrip("#").strip()
    return comments


def field_tooltips(config_class: type) -> dict[str, str]:
    """A tooltip for every field of ``config_class`` (see the module docstring for where)."""
    documented = _docstring_entries(config_class)
    commented = _source_comments(config_class)
    tooltips = {}
    for field in dataclasses.fields(config_class):
        from_metadata = next(
            (field.metadata[k] for k in ("help", "doc", "description") if k in field.metadata),
            None,
        )
        text = from_metadata or documented.get(field.name) or commented.get(field.name)
        text = str(text) if text else field_label(field)
        tooltips[field.name] = f"{text} (default: {_default(field)!r})"
    return tooltips


def _resolved_types(config_class: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(config_class)
    except (NameError, TypeError) as error:
        logger.debug("cannot resolve the annotations of %s: %s", config_class.__name__, error)
        return {f.name: f.type for f in dataclasses.fields(config_class)}


def _split_optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None`` / ``Optional[X]``, else ``(annotation, False)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            return members[0], True
    return annotation, False


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


class _Editor:
    """One field's editor: a widget, how to show a value, how to read it back."""

    def __init__(self, widget: QWidget, show, read) -> None:
        self.widget, self.show, self.read = widget, show, read


def _number_editor(field, kind: type, optional: bool, default: Any) -> _Editor:
    negative = isinstance(default, int | float) and default < 0
    low = float(field.metadata.get("min", -_BIG if negative else 0))
    high = float(field.metadata.get("max", _BIG))
    if kind is int:
        box: QSpinBox | QDoubleSpinBox = QSpinBox()
        box.setRange(int(low) - (1 if optional else 0), int(min(high, 2**31 - 1)))
    else:
        box = QDoubleSpinBox()
        magnitude = abs(float(default)) if isinstance(default, int | float) and default else 1.0
        exponent = math.floor(math.log10(magnitude))
        box.setDecimals(max(2, 2 - exponent))
        box.setSingleStep(10.0**exponent / 10 if exponent < 0 else 0.1 * 10.0**exponent)
        step = box.singleStep()
        box.setRange(low - (step if optional else 0.0), high)
    box.setKeyboardTracking(False)
    if optional:
        box.setSpecialValueText(_NONE_TEXT)

    def show(value: Any) -> None:
        box.setValue(box.minimum() if value is None else kind(value))

    def read() -> Any:
        if optional and box.value() == box.minimum():
            return None
        return kind(box.value())

    return _Editor(box, show, read)


def _choice_editor(choices: list[Any]) -> _Editor:
    box = QComboBox()
    for choice in choices:
        box.addItem(str(choice.name if isinstance(choice, enum.Enum) else choice), choice)

    def show(value: Any) -> None:
        index = next((i for i, c in enumerate(choices) if c == value), -1)
        if index >= 0:
            box.setCurrentIndex(index)

    return _Editor(box, show, box.currentData)


def _sequence_editor(item: type, container: type) -> _Editor:
    line = QLineEdit()
    line.setPlaceholderText("comma-separated, empty for none")

    def show(value: Any) -> None:
        line.setText(", ".join(str(v) for v in (value or ())))

    def read() -> Any:
        parts = [p.strip() for p in line.text().replace(";", ",").split(",") if p.strip()]
        try:
            return container(item(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"{line.text()!r} is not a comma-separated list of {item.__name__} values"
            ) from None

    return _Editor(line, show, read)


def make_editor(field: dataclasses.Field, annotation: Any) -> _Editor:
    """The editor for one field (see the module docstring for the mapping)."""
    default = _default(field)
    kind, optional = _split_optional(annotation)
    origin = typing.get_origin(kind)
    if kind is bool:
        box = QCheckBox()
        return _Editor(box, lambda v: box.setChecked(bool(v)), box.isChecked)
    if kind in (int, float):
        return _number_editor(field, kind, optional, default)
    if origin is typing.Literal:
        return _choice_editor(list(typing.get_args(kind)))
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return _choice_editor(list(kind))
    if kind is str:
        line = QLineEdit()
        return _Editor(line, lambda v: line.setText("" if v is None else str(v)), line.text)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(kind) if a is not Ellipsis]
        if len(set(args)) == 1 and args[0] in (int, float, str):
            return _sequence_editor(args[0], origin)
    label = QLabel()
    kept = {"value": default}

    def show(value: Any) -> None:
        kept["value"] = value
        label.setText(repr(value))

    return _Editor(label, show, lambda: kept["value"])


class ConfigForm(QWidget):
    """Rows of editors for the fields of a config dataclass; reads back a config instance.

    Parameters
    ----------
    config_class:
        A dataclass whose fields all have defaults (None: an empty form).
    parent:
        The parent widget.
    """

    def __init__(self, config_class: type | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QFormLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self.config_class: type | None = None
        self.editors: dict[str, _Editor] = {}
        if config_class is not None:
            self.set_config_class(config_class)

    @property
    def fields(self) -> dict[str, QWidget]:
        """``{field name: editor widget}`` (tests and screenshots set values through these)."""
        return {name: editor.widget for name, editor in self.editors.items()}

    def set_config_class(self, config_class: type, values: Any | None = None) -> None:
        """Rebuild the rows for ``config_class`` and show ``values`` (default: its defaults)."""
        while self._layout.rowCount():
            self._layout.removeRow(0)
        self.config_class = config_class
        self.editors = {}
        annotations = _resolved_types(config_class)
        tooltips = field_tooltips(config_class)
        for field in dataclasses.fields(config_class):
            if not field.init:
                continue
            editor = make_editor(field, annotations.get(field.name, field.type))
            editor.widget.setToolTip(tooltips[field.name])
            editor.widget.setObjectName(field.name)
            self.editors[field.name] = editor
            label = QLabel(field_label(field))
            label.setToolTip(tooltips[field.name])
            self._layout.addRow(label, editor.widget)
        self.show_config(values if values is not None else config_class())

    def show_config(self, config: Any) -> None:
        """Show the values of ``config`` (an instance of the form's class)."""
        for name, editor in self.editors.items():
            editor.show(getattr(config, name))

    def config(self) -> Any:
        """The values as a ``config_class`` instance.

        Raises
        ------
        ValueError
            A value cannot be read, or the config rejects it (its message says which).
        """
        if self.config_class is None:
            raise ValueError("no settings form was built")
        values = {name: editor.read() for name, editor in self.editors.items()}
        try:
            return self.config_class(**values)
        except TypeError as error:
            raise ValueError(f"{self.config_class.__name__}: {error}") from error
