"""The nucleus-guided cell model: one pixel may belong to two cells.

Two small U-Nets learn from pixels:

- the **nucleus net** sees the field (any number of channels: grey or RGB) and gives three
  classes per pixel, background / nucleus inside / nucleus rim; a seeded watershed of the
  inside probability (:mod:`napari_distill.core.inference.cells`) splits touching nuclei;
- the **cell net** sees a square window around one nucleus, resampled to ``crop_size``, with
  two extra channels marking *this* nucleus and every *other* nucleus, and gives that cell's
  whole mask (background / cell). Each cell is predicted on its own, so two cells may claim
  the same pixel: overlaps come out as they are, and the cells are packed into planes.

The window's size is measured from the painted cells (:func:`cell_window`), never assumed, so
the same code serves smears imaged at another magnification. A checkpoint is one plain dict
(weights, config, geometry, step; no pickled classes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

NUCLEUS_CLASSES = ("background", "nucleus", "nucleus rim")
CELL_CHECKPOINT_KIND = "napari_distill.cells"


@dataclass(frozen=True)
class CellModelConfig:
    """Shape of the two networks and the geometry they work at."""

    in_channels: int = field(default=1, metadata={"help": "Colour channels of the fields."})
    width: int = field(default=16, metadata={"help": "Channels of the first U-Net level."})
    depth: int = field(default=3, metadata={"help": "Down-sampling levels of each U-Net."})
    crop_size: int = field(
        default=96,
        metadata={"help": "Side in pixels of the resampled window the cell net sees."},
    )
    window: int = field(
        default=192,
        metadata={"help": "Side in field pixels of the window around a nucleus (measured)."},
    )
    min_nucleus_area: int = field(
        default=4, metadata={"help": "Smaller predicted nuclei are dropped (measured)."}
    )
    min_cell_area: int = field(
        default=16, metadata={"help": "Smaller predicted cells are dropped (measured)."}
    )

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.width < 4 or self.depth < 1:
            raise ValueError(f"invalid cell model shape: {self}")
        if self.crop_size % (2**self.depth):
            raise ValueError(f"crop_size must be a multiple of {2**self.depth}")


def _block(cin: int, cout: int) -> nn.Sequential:
    groups = 4 if cout % 4 == 0 else 1  # GroupNorm: batch-size free, so EMA copies behave
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(groups, cout),
        nn.ReLU(inplace=True),
    )


class SmallUNet(nn.Module):
    """A U-Net whose forward also returns its decoder's feature maps (coarsest first), which
    the mean teacher's mask-guided distillation compares level by level."""

    def __init__(self, in_channels: int, out_channels: int, width: int, depth: int):
        super().__init__()
        chans = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_block(in_channels, chans[0])])
        self.down.extend(_block(chans[i], chans[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(depth))
        )
        self.dec = nn.ModuleList(_block(2 * chans[i], chans[i]) for i in reversed(range(depth)))
        self.head = nn.Conv2d(chans[0], out_channels, 1)
        self.feature_channels = tuple(chans[i] for i in reversed(range(depth + 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        out = x
        for index, block in enumerate(self.down):
            out = block(out if index == 0 else F.max_pool2d(out, 2))
            skips.append(out)
        features = [out]
        for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
            out = dec(torch.cat([up(out), skip], dim=1))
            features.append(out)
        return self.head(out), features


class CellModel(nn.Module):
    """The nucleus net and the cell net, trained together, copied together (EMA teacher)."""

    def __init__(self, config: CellModelConfig):
        super().__init__()
        self.config = config
        self.nuclei = SmallUNet(
            config.in_channels, len(NUCLEUS_CLASSES), config.width, config.depth
        )
        self.cells = SmallUNet(config.in_channels + 2, 2, config.width, config.depth)


def pad_for(size: int, depth: int) -> int:
    """Pixels to add so that ``size`` divides by ``2**depth``."""
    return (-size) % (2**depth)


def crop_windows(
    image: torch.Tensor,
    nuclei: torch.Tensor,
    centres: np.ndarray,
    ids: np.ndarray,
    window: int,
    crop_size: int,
) -> torch.Tensor:
    """The cell net's input for every nucleus: ``(len(centres), C + 2, crop_size, crop_size)``.

    Parameters
    ----------
    image:
        ``(C, H, W)`` normalised field.
    nuclei:
        ``(H, W)`` integer nucleus instances of the field (painted or predicted).
    centres:
        ``(M, 2)`` integer (row, column) of each window's centre.
    ids:
        ``(M,)`` the nucleus id each window is about (its marker channel).
    """
    half = window // 2
    padded = F.pad(image[None], (half, half, half, half), mode="replicate")[0]
    padded_nuclei = F.pad(nuclei[None, None].float(), (half, half, half, half))[0, 0]
    crops = []
    for (row, col), nucleus_id in zip(centres.astype(int), ids, strict=True):
        box = (slice(row, row + window), slice(col, col + window))
        patch = padded[(slice(None), *box)]
        labels = padded_nuclei[box]
        this = (labels == float(nucleus_id)).float()
        other = ((labels > 0) & (labels != float(nucleus_id))).float()
        crops.append(torch.cat([patch, this[None], other[None]], dim=0))
    if not crops:
        return image.new_zeros((0, image.shape[0] + 2, crop_size, crop_size))
    batch = torch.stack(crops)
    if window != crop_size:
        batch = F.interpolate(batch, size=(crop_size, crop_size), mode="area")
    return batch


def cell_window(cell_masks: list[np.ndarray], centres: list[tuple[float, float]], depth: int):
    """Window side that holds the painted cells around their nuclei (with a 15 % margin): twice
    the largest distance from a nucleus centre to a pixel of its cell."""
    reach = 8.0
    for mask, (cy, cx) in zip(cell_masks, centres, strict=True):
        rows, cols = np.nonzero(mask)
        if rows.size:
            reach = max(reach, float(np.max(np.maximum(np.abs(rows - cy), np.abs(cols - cx)))))
    side = int(np.ceil(2 * reach * 1.15)) + 1
    return side + pad_for(side, depth)


def save_cell_model(
    path: str | Path,
    model: CellModel,
    step: int,
    extra: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> Path:
    """One dict: weights, config, step and plain extras (strategy, settings, history), and,
    from a training run, what resuming it needs (``training_state``: optimiser, random states,
    a strategy's own networks; tensors and plain values only)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.part")
    payload = {
        "kind": CELL_CHECKPOINT_KIND,
        "config": dataclasses.asdict(model.config),
        "state_dict": model.state_dict(),
        "step": int(step),
        "extra": extra,
    }
    if training_state is not None:
        payload["training_state"] = training_state
    torch.save(payload, temporary)
    temporary.replace(path)
    return path


def _load_payload(path: str | Path) -> dict[str, Any]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("kind") != CELL_CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a napari-distill cell model checkpoint")
    return payload


def load_cell_model(path: str | Path) -> tuple[CellModel, int, dict[str, Any]]:
    """The model, its step and its extras from :func:`save_cell_model`'s file.

    Raises
    ------
    ValueError
        The file is not a cell model checkpoint.
    """
    payload = _load_payload(path)
    model = CellModel(CellModelConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    return model, int(payload["step"]), dict(payload.get("extra", {}))


def load_training_state(path: str | Path) -> dict[str, Any] | None:
    """What :func:`save_cell_model` kept for resuming a run, or None (a checkpoint written
    without it, e.g. before resuming was complete: Resume then cannot continue it exactly).

    Raises
    ------
    ValueError
        The file is not a cell model checkpoint.
    """
    return _load_payload(path).get("training_state")
