"""Slice tags, as weak labels: which classes a slice contains, read from a CSV file.

A tag is the cheapest annotation there is (a glance at a slice and a list of classes), so the
file is the simplest a spreadsheet writes: a header ``slice,classes`` and one row per tagged
slice, the classes separated by spaces or semicolons (``3,1 2`` or ``3,"1;2"``). A slice
tagged with no class (an empty cell) says it holds background only. Every class a row does
not list is *absent* from that slice; the background (0) is never tagged.

:func:`write_tags_csv` writes the same format (classes separated by spaces), so a file saved
by the Student widget is read back by the command line and the other way round.

The header tells this file apart from a points file (``slice,y,x,class``):
:func:`weak_csv_kind` reads only the header.
"""

from __future__ import annotations

import csv
import io
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path

from .common import ReadError
from .write import check_output_path

TAG_COLUMNS = ("slice", "classes")


def _rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="") as handle:
            return [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise ReadError(f"cannot read {path}: {error}") from error


def weak_csv_kind(path: str | os.PathLike[str]) -> str:
    """``"tags"`` for a CSV whose header names ``slice`` and ``classes``, else ``"points"``
    (a points file may have no header at all)."""
    rows = _rows(Path(path))
    header = [cell.strip().lower() for cell in rows[0]] if rows else []
    return "tags" if all(name in header for name in TAG_COLUMNS) else "points"


def read_tags_csv(path: str | os.PathLike[str]) -> dict[int, tuple[int, ...]]:
    """``{slice: present class ids}`` from a CSV with columns ``slice`` and ``classes``.

    Other columns are ignored; a slice listed twice gets the union of its rows.

    Raises
    ------
    ReadError
        No ``slice`` / ``classes`` header, a slice or class that is not a whole number
        >= 0, or class 0 (the background is never tagged).
    """
    path = Path(path)
    rows = _rows(path)
    if not rows:
        return {}
    header = [cell.strip().lower() for cell in rows[0]]
    missing = [name for name in TAG_COLUMNS if name not in header]
    if missing:
        raise ReadError(
            f"the tags file {path} has no column {', '.join(missing)}: its header must be "
            "'slice,classes' (classes separated by spaces or semicolons)"
        )
    at_slice, at_classes = (header.index(name) for name in TAG_COLUMNS)
    tags: dict[int, set[int]] = {}
    for number, row in enumerate(rows[1:], start=2):
        try:
            index = int(row[at_slice].strip())
            cell = row[at_classes] if at_classes < len(row) else ""
            classes = {int(c) for c in re.split(r"[\s;]+", cell.strip()) if c}
        except (ValueError, IndexError) as error:
            raise ReadError(
                f"the tags file {path}, line {number}: the slice and its classes must be whole "
                f"numbers ({row})"
            ) from error
        if index < 0 or any(c <= 0 for c in classes):
            raise ReadError(
                f"the tags file {path}, line {number}: slices are >= 0 and classes >= 1 (the "
                "background is never tagged)"
            )
        tags.setdefault(index, set()).update(classes)
    return {index: tuple(sorted(classes)) for index, classes in sorted(tags.items())}


def write_tags_csv(
    path: str | os.PathLike[str],
    tags: Mapping[int, Sequence[int]],
    overwrite: bool = False,
) -> Path:
    """Write ``{slice: present class ids}`` as the CSV :func:`read_tags_csv` reads, atomically.

    Raises
    ------
    ValueError
        Not a ``.csv`` name, or a slice < 0 or a class < 1 (the background is never tagged).
    FileExistsError
        The file exists and ``overwrite`` is False.
    """
    target = check_output_path(path, overwrite, (".csv",))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TAG_COLUMNS)
    for index in sorted(int(i) for i in tags):
        classes = sorted({int(c) for c in tags[index]})
        if index < 0 or any(c <= 0 for c in classes):
            raise ValueError(
                f"slice {index}: slices are >= 0 and classes >= 1 (the background is never tagged)"
            )
        writer.writerow([index, " ".join(str(c) for c in classes)])
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        temporary.write_text(buffer.getvalue())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target
