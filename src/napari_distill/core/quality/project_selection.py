"""The selection of a project's slices: one :class:`Selection` per image, ranked across images.

The review of many volumes is one list of ``(image, slice)`` pairs, worst first across images
(the slice to look at next may be in any of them); tau and every decision still belong to one
image's :class:`Selection`. A project's ``scores.csv`` is a single image's with an ``image``
column in front; a file without that column (a single image's run) loads as one image.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .selection import CSV_COLUMNS, RANKINGS, Selection, SelectionFileError

IMAGE_COLUMN = "image"
SINGLE_IMAGE = ""  # the name of the one image of a file without an image column


@dataclass
class ProjectSelection:
    """``{image name: Selection}`` in the project's order."""

    selections: dict[str, Selection]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.selections)

    def __getitem__(self, name: str) -> Selection:
        return self.selections[name]

    def set_tau(self, tau: float) -> None:
        for selection in self.selections.values():
            selection.set_tau(tau)

    def accepted(self) -> dict[str, list[int]]:
        """``{image: accepted slices}``."""
        return {name: s.accepted_slices for name, s in self.selections.items()}

    def pairs(self) -> list[tuple[str, int]]:
        """Every ``(image, slice)`` pair, in order."""
        return [(name, i) for name, s in self.selections.items() for i in sorted(s.scores)]

    def worst_first(self, by: str = "score") -> list[tuple[str, int]]:
        """Unannotated scored ``(image, slice)`` pairs, lowest ``by`` first, across images."""
        if by not in RANKINGS:
            raise ValueError(f"rank by one of {RANKINGS}, got {by!r}")
        values = []
        for name, selection in self.selections.items():
            table = selection.scores if by == "score" else selection.confidence
            for index in selection.worst_first(by):
                values.append((table.get(index, math.nan), name, index))
        values.sort(key=lambda v: (math.isnan(v[0]), v[0]))
        return [(name, index) for _, name, index in values]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {IMAGE_COLUMN: name, **row}
            for name, selection in self.selections.items()
            for row in selection.rows()
        ]

    def save_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per ``(image, slice)``: the single-image columns with ``image`` first."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow((IMAGE_COLUMN, *CSV_COLUMNS))
            for row in self.rows():
                score, confidence = (
                    "" if row[k] is None else f"{row[k]:.6f}" for k in ("score", "confidence")
                )
                flags = [int(row[k]) for k in ("accepted", "overridden", "annotated")]
                writer.writerow([row[IMAGE_COLUMN], row["slice"], score, *flags, confidence])
        return path

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """``{"tau": ..., "images": {name: [rows]}}`` (tau of the first image)."""
        path = Path(path)
        first = next(iter(self.selections.values()))
        payload = {
            "tau": first.tau,
            "images": {name: s.rows() for name, s in self.selections.items()},
        }
        path.write_text(json.dumps(payload, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], tau: float | None = None) -> ProjectSelection:
        """Read a project's or a single image's selection (CSV or JSON, by extension).

        A single image's file (no ``image`` column) gives one image named ``""``.

        Raises
        ------
        SelectionFileError
            As :meth:`Selection.load`, the file named.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"selection file {path} does not exist")
        try:
            if path.suffix.lower() == ".json":
                payload = json.loads(path.read_text())
                if isinstance(payload, dict) and isinstance(payload.get("images"), dict):
                    saved_tau = payload.get("tau") if tau is None else tau
                    return cls(
                        {
                            str(name): Selection._from_rows(list(rows), saved_tau)
                            for name, rows in payload["images"].items()
                        }
                    )
                return cls({SINGLE_IMAGE: Selection.load(path, tau)})
            with path.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            groups = _group(rows)
            return cls({name: Selection._from_rows(g, tau) for name, g in groups.items()})
        except (SelectionFileError, json.JSONDecodeError, UnicodeDecodeError, csv.Error) as error:
            raise SelectionFileError(f"{path} is not a valid selection file ({error})") from error


def _group(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(str(row.get(IMAGE_COLUMN) or SINGLE_IMAGE), []).append(row)
    return groups or {SINGLE_IMAGE: []}
