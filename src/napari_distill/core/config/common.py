"""What every config shares: limits, and the conversion to and from checkpoints' plain dicts."""

from __future__ import annotations

import dataclasses
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")

# Networks in one ensemble at most: each costs a whole network's training and prediction.
MAX_MEMBERS = 8
VIEW_AXES = 3  # a volume's axes: a views ensemble has members along each
MAX_DOWNSAMPLE = 8  # a larger factor leaves too few pixels of most structures to segment


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build the dataclass ``cls`` from ``values``, ignoring keys it does not know."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in values.items():
        if key in known:
            kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """The config as a dict of plain Python values (safe for ``weights_only`` checkpoints)."""
    return dataclasses.asdict(config)
