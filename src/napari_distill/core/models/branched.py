"""One encoder, two decoders: the network of the ``mixed`` strategy (method 3).

The *teacher branch* is an ordinary U-Net's decoder and head (the same parameter names, so a
trained teacher's weights load into it as they are); the *student branch* is a second decoder
and head on the same encoder features. Both see the same encoding of a patch, so what the
teacher branch learns from full masks shapes the features the student branch reads, and the
student's KL term compares two predictions of the very same pixels.

``forward`` returns the branch named by :attr:`BranchedUNet.output_branch` (the student by
default), so prediction, validation and checkpoints treat it as any other network;
:meth:`BranchedUNet.forward_branches` gives both for training.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .networks import ConvBlock, UNet

TEACHER_BRANCH, STUDENT_BRANCH = 0, 1


class _Decoder(nn.Module):
    """A U-Net decoder and head (upsamplers, decoder blocks, 1x1 classifier)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        widths = [config.base_channels * 2**level for level in range(config.depth)]
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(config.depth - 2, -1, -1):
            self.upsamplers.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, 2))
            self.decoders.append(ConvBlock(2 * widths[level], widths[level], config.norm))
        self.head = nn.Conv2d(widths[0], config.num_classes, 1)


class BranchedUNet(UNet):
    """A U-Net with a second decoder (:data:`STUDENT_BRANCH`) on its encoder.

    Parameters
    ----------
    config:
        The shape; ``decoders`` must be 2 and deep supervision is off (the strategy's losses
        use the main heads only).
    """

    def __init__(self, config: ModelConfig):
        if config.decoders != 2:
            raise ValueError(f"a branched U-Net has 2 decoders, the config says {config.decoders}")
        super().__init__(dataclasses.replace(config, deep_supervision=False))
        self.config = config
        self.student = _Decoder(config)
        self.output_branch = STUDENT_BRANCH

    def _decode(self, skips: list[torch.Tensor], branch: int) -> torch.Tensor:
        decoder = self if branch == TEACHER_BRANCH else self.student
        out = skips[-1]
        for offset, (upsample, block) in enumerate(
            zip(decoder.upsamplers, decoder.decoders, strict=True)
        ):
            out = block(torch.cat((upsample(out), skips[-2 - offset]), dim=1))
        return decoder.head(out)

    def forward_branches(
        self, x: torch.Tensor, branches: tuple[int, ...] = (TEACHER_BRANCH, STUDENT_BRANCH)
    ) -> list[torch.Tensor]:
        """Logits ``(B, K, H, W)`` of each branch in ``branches``, from one encoding of ``x``."""
        full_size = x.shape[-2:]
        if self.config.downsample > 1:
            factor = self.config.downsample
            x = F.adaptive_avg_pool2d(x, (-(-full_size[0] // factor), -(-full_size[1] // factor)))
        height, width = x.shape[-2:]
        out = self._pad(x)
        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            out = encoder(out if level == 0 else self.pool(out))
            skips.append(out)
        logits = []
        for branch in branches:
            result = self._decode(skips, branch)[..., :height, :width]
            if result.shape[-2:] != full_size:
                result = F.interpolate(result, size=full_size, mode="bilinear", align_corners=False)
            logits.append(result)
        return logits

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:  # type: ignore[override]
        """Logits of :attr:`output_branch` (feature maps are not offered by this network)."""
        if return_features:
            raise ValueError("a branched U-Net does not return feature maps")
        return self.forward_branches(x, (self.output_branch,))[0]

    def load_teacher(self, teacher: nn.Module) -> None:
        """Start both branches (and the encoder) from a trained U-Net of the same shape."""
        state = {k: v for k, v in teacher.state_dict().items() if not k.startswith("auxiliary")}
        self.load_state_dict(state, strict=False)
        self.student.upsamplers.load_state_dict(self.upsamplers.state_dict())
        self.student.decoders.load_state_dict(self.decoders.state_dict())
        self.student.head.load_state_dict(self.head.state_dict())


class BranchView(nn.Module):
    """One branch of a :class:`BranchedUNet` as a network of its own (shares its weights)."""

    def __init__(self, model: BranchedUNet, branch: int):
        super().__init__()
        self.model = model
        self.branch = branch

    @property
    def size_multiple(self) -> int:
        return self.model.size_multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_branches(x, (self.branch,))[0]
