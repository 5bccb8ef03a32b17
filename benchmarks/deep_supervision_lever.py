"""A teacher lever measured before it is built: deep supervision, patched in for one run.

    .venv/bin/python benchmarks/deep_supervision_lever.py --seed 1 --steps 2000 --every 1000

Runs ``teacher_levers.py`` (same arguments, same JSON) with two changes patched into the
engine for this process only: the U-Net gets a 1x1 classification head on each decoder level
between the bottleneck and full resolution, and the teacher's loss adds, for each, the same
class-weighted CE + soft Dice on its logits upsampled (bilinear) to the patch, weighted 0.5
for the finest such level, 0.25 for the next, and so on (as nnU-Net weighs its deep
supervision). Prediction uses the main head only, so the unseen-slice scores compare directly
with ``teacher_levers.py``. Not part of the product: if the lever holds over three seeds it
belongs in ``ModelConfig``/``SupervisedObjective`` with tests (docs/benchmarks.md, "Levers
measured").
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import teacher_levers
from napari_distill.core import models, objectives
from napari_distill.core.config import ModelConfig
from napari_distill.core.losses import ce_dice_loss

_plain_init = models.UNet.__init__


def _init_with_auxiliary_heads(self: models.UNet, config: ModelConfig) -> None:
    _plain_init(self, config)
    widths = [config.base_channels * 2**level for level in range(config.depth)]
    # forward(return_features=True) lists the decoder maps coarsest first; heads for all but
    # the bottleneck and the full-resolution map (which has the main head).
    self.aux_heads = nn.ModuleList(
        nn.Conv2d(widths[level], config.num_classes, 1) for level in range(config.depth - 2, 0, -1)
    )


def _deeply_supervised_loss(
    self: objectives.SupervisedObjective, model: nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, Any]]:
    logits, features = model(batch["x"], return_features=True)
    class_weight = None if self.class_weight is None else self.class_weight.to(logits.device)

    def loss_of(output: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return ce_dice_loss(output, batch["y"], self.num_classes, class_weight, self.dice_weight)

    total, parts = loss_of(logits)
    decoder_maps = features[1:-1]
    weights = [0.5 ** (len(decoder_maps) - i) for i in range(len(decoder_maps))]
    for head, feature, weight in zip(model.aux_heads, decoder_maps, weights, strict=True):
        upsampled = F.interpolate(head(feature), size=logits.shape[-2:], mode="bilinear")
        total = total + weight * loss_of(upsampled)[0]
    return total, parts


_plain_run = teacher_levers.run


def _run_recorded_as_this_script(args: Any) -> dict[str, Any]:
    result = _plain_run(args)
    result["command"] = "benchmarks/deep_supervision_lever.py " + " ".join(args.argv)
    result["deep_supervision"] = True
    return result


if __name__ == "__main__":
    models.UNet.__init__ = _init_with_auxiliary_heads
    objectives.SupervisedObjective.loss = _deeply_supervised_loss
    teacher_levers.run = _run_recorded_as_this_script
    teacher_levers.main()
