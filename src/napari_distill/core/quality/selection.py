"""Which pseudo-labelled slices the student learns from: automatic decisions plus overrides.

A slice is accepted automatically when its quality score is ``>= tau``. The user can accept or
reject any slice by hand; those decisions are *overrides*, kept explicitly, and survive a change
of ``tau`` (which re-derives only the automatic decisions). Annotated slices have ground truth,
so they are never pseudo-labelled: they are marked, never accepted, and cannot be overridden.

Each slice may also carry the teacher's own confidence in its pseudo-label (a second opinion to
review by; :func:`~napari_distill.core.quality.pseudo_label_confidence`); ``tau`` applies to
the score only.

A selection is saved as CSV (``slice,score,accepted,overridden,annotated,confidence``; one row
per slice) or JSON (the same rows plus ``tau``), and read back from either; files without the
``annotated`` or ``confidence`` column (older ones) still load.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation import spearman

CSV_COLUMNS = ("slice", "score", "accepted", "overridden", "annotated", "confidence")
REQUIRED_COLUMNS = CSV_COLUMNS[:4]
RANKINGS = ("score", "confidence")  # what :meth:`Selection.worst_first` can rank by
_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


class SelectionFileError(ValueError):
    """A selection file cannot be read (missing columns, bad values); the message names it."""


@dataclass
class Selection:
    """Scores per slice, the accepted slices and the user's overrides.

    Attributes
    ----------
    scores:
        ``{slice: predicted IoU}``; NaN for a slice that was not scored.
    accepted:
        The slices currently accepted (automatic decisions and overrides together).
    tau:
        The automatic threshold: a scored, unannotated slice with ``score >= tau`` is accepted.
    annotated:
        Slices with ground truth (never pseudo-labelled).
    overrides:
        ``{slice: accepted?}`` set by :meth:`accept` / :meth:`reject`; they win over ``tau``.
    confidence:
        ``{slice: the teacher's confidence}``; slices without one are simply absent.
    """

    scores: dict[int, float]
    accepted: set[int] = field(default_factory=set)
    tau: float = 0.7
    annotated: set[int] = field(default_factory=set)
    overrides: dict[int, bool] = field(default_factory=dict)
    confidence: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_scores(
        cls,
        scores: Mapping[int, float] | np.ndarray,
        tau: float = 0.7,
        annotated: Iterable[int] = (),
        confidence: Mapping[int, float] | np.ndarray | None = None,
    ) -> Selection:
        """A selection with the automatic decisions at ``tau``.

        ``scores`` (and the optional ``confidence``) are ``{slice: value}`` or ``(N,)`` arrays
        (NaN: not scored).
        """
        values = _per_slice(scores)
        extra = {} if confidence is None else _per_slice(confidence)
        selection = cls(
            values,
            tau=float(tau),
            annotated={int(i) for i in annotated},
            confidence={i: v for i, v in extra.items() if i in values and not math.isnan(v)},
        )
        selection.set_tau(tau)
        return selection

    # -------------------------------------------------------------------------- decisions
    def automatic(self, index: int) -> bool:
        """The decision ``tau`` alone makes for slice ``index``."""
        score = self.scores.get(index, math.nan)
        return index not in self.annotated and not math.isnan(score) and score >= self.tau

    def set_tau(self, tau: float) -> None:
        """Change the threshold; automatic decisions follow, overrides stay."""
        if not 0.0 <= tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {tau}")
        self.tau = float(tau)
        self.accepted = {
            i for i in self.scores if self.overrides.get(i, self.automatic(i))
        } - self.annotated

    def _check(self, index: int) -> int:
        index = int(index)
        if index not in self.scores:
            raise KeyError(f"slice {index} is not in this selection")
        if index in self.annotated:
            raise ValueError(
                f"slice {index} is annotated: its ground truth is used, not a pseudo-label"
            )
        return index

    def accept(self, index: int) -> None:
        """Accept slice ``index`` whatever its score (an override)."""
        index = self._check(index)
        self.overrides[index] = True
        self.accepted.add(index)

    def reject(self, index: int) -> None:
        """Reject slice ``index`` whatever its score (an override)."""
        index = self._check(index)
        self.overrides[index] = False
        self.accepted.discard(index)

    def reset(self, index: int) -> None:
        """Drop the override of slice ``index``: back to the automatic decision."""
        index = self._check(index)
        self.overrides.pop(index, None)
        if self.automatic(index):
            self.accepted.add(index)
        else:
            self.accepted.discard(index)

    def worst_first(self, by: str = "score") -> list[int]:
        """Unannotated slices from the lowest ``"score"`` or ``"confidence"`` up.

        Slices without that value (not scored, no confidence) are left out; ties go to the
        lower index first.
        """
        if by not in RANKINGS:
            raise ValueError(f"rank by one of {', '.join(RANKINGS)}, not {by!r}")
        values = self.scores if by == "score" else self.confidence
        ranked = [
            i
            for i, value in values.items()
            if i in self.scores and i not in self.annotated and not math.isnan(value)
        ]
        return sorted(ranked, key=lambda i: (values[i], i))

    def agreement(self) -> float:
        """Spearman correlation of score and confidence over the unannotated slices with both.

        NaN when fewer than two such slices (or either is constant).
        """
        both = [i for i in self.worst_first("confidence") if not math.isnan(self.scores[i])]
        return spearman([self.scores[i] for i in both], [self.confidence[i] for i in both])

    @property
    def accepted_slices(self) -> list[int]:
        """The accepted slices, ascending (a plain list to edit or pass on)."""
        return sorted(self.accepted)

    # -------------------------------------------------------------------------- files
    def rows(self) -> list[dict[str, Any]]:
        """One dict per slice, ascending: slice, score (None if not scored), accepted,
        overridden, annotated, confidence (None if none)."""
        return [
            {
                "slice": i,
                "score": None if math.isnan(self.scores[i]) else self.scores[i],
                "accepted": i in self.accepted,
                "overridden": i in self.overrides,
                "annotated": i in self.annotated,
                "confidence": self.confidence.get(i),
            }
            for i in sorted(self.scores)
        ]

    def save_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per slice (empty score: not scored)."""
        path = Path(path)
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for row in self.rows():
                score, confidence = (
                    "" if row[k] is None else f"{row[k]:.6f}" for k in ("score", "confidence")
                )
                flags = [int(row[k]) for k in ("accepted", "overridden", "annotated")]
                writer.writerow([row["slice"], score, *flags, confidence])
        return path

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write ``{"tau": ..., "slices": [rows]}``."""
        path = Path(path)
        path.write_text(json.dumps({"tau": self.tau, "slices": self.rows()}, indent=2))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], tau: float | None = None) -> Selection:
        """Read a CSV or JSON selection (by extension; ``.json`` is JSON, anything else CSV).

        CSV files carry no ``tau``: pass it (default 0.7); a JSON file's ``tau`` is used unless
        ``tau`` is given. The accepted flags of overridden slices are kept as they were saved.

        Raises
        ------
        SelectionFileError
            Missing columns, values that are not numbers or flags, or duplicate slices.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"selection file {path} does not exist")
        try:
            if path.suffix.lower() == ".json":
                payload = json.loads(path.read_text())
                if not isinstance(payload, dict) or not isinstance(payload.get("slices"), list):
                    raise SelectionFileError("expected an object with a 'slices' list")
                rows = payload["slices"]
                saved_tau = payload.get("tau")
            else:
                with path.open(newline="") as handle:
                    rows = list(csv.DictReader(handle))
                saved_tau = None
            return cls._from_rows(rows, tau if tau is not None else saved_tau)
        except (SelectionFileError, json.JSONDecodeError, UnicodeDecodeError, csv.Error) as error:
            raise SelectionFileError(
                f"{path} is not a valid selection file ({error}); expected columns "
                f"{', '.join(REQUIRED_COLUMNS)} (and optionally annotated, confidence)"
            ) from error

    @classmethod
    def _from_rows(cls, rows: list[Any], tau: Any) -> Selection:
        selection = cls({}, tau=0.7 if tau is None else _number(tau, "tau"))
        if not 0.0 <= selection.tau <= 1.0:
            raise SelectionFileError(f"tau {selection.tau} is outside [0, 1]")
        saved_accepted: dict[int, bool] = {}
        for number, row in enumerate(rows, start=1):
            if not isinstance(row, Mapping):
                raise SelectionFileError(f"row {number} is not a record")
            missing = [c for c in REQUIRED_COLUMNS if c not in row]
            if missing:
                raise SelectionFileError(f"row {number} lacks {', '.join(missing)}")
            index = int(_number(row["slice"], f"row {number} slice"))
            if index in selection.scores:
                raise SelectionFileError(f"slice {index} appears twice")
            score = row["score"]
            selection.scores[index] = (
                math.nan if score in (None, "") else _number(score, f"row {number} score")
            )
            confidence = row.get("confidence")
            if confidence not in (None, ""):
                value = _number(confidence, f"row {number} confidence")
                if not math.isnan(value):
                    selection.confidence[index] = value
            saved_accepted[index] = _flag(row["accepted"], f"row {number} accepted")
            if _flag(row.get("annotated", False), f"row {number} annotated"):
                selection.annotated.add(index)
            elif _flag(row["overridden"], f"row {number} overridden"):
                selection.overrides[index] = saved_accepted[index]
        selection.set_tau(selection.tau)
        return selection


def _per_slice(values: Mapping[int, float] | np.ndarray) -> dict[int, float]:
    if isinstance(values, Mapping):
        return {int(k): float(v) for k, v in values.items()}
    return {i: float(v) for i, v in enumerate(np.asarray(values).ravel())}


def _number(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SelectionFileError(f"{what} is {value!r}, not a number") from None
    if isinstance(value, bool) or math.isinf(number):
        raise SelectionFileError(f"{what} is {value!r}, not a number")
    return number


def _flag(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise SelectionFileError(f"{what} is {value!r}; use 1/0 or true/false")
