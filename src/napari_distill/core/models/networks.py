"""The 2D U-Net family used for teachers and students.

One network shape serves every method: BatchNorm by default (it learns faster per step and
evaluates locally, tile by tile) or GroupNorm for batches of one, dropout in the deeper encoder
stages and the bottleneck (turned on at test time by :func:`enable_dropout` to make
predictions of varied quality for the quality classifier), the decoder's feature maps on
request for feature distillation, and optional deep-supervision heads on the intermediate
decoder levels for training. :class:`ModelEnsemble` holds several such networks and predicts
the mean of their probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def norm_groups(channels: int, channels_per_group: int = 4, max_groups: int = 32) -> int:
    """Groups for GroupNorm: about ``channels_per_group`` channels each, dividing ``channels``."""
    groups = min(max_groups, max(1, channels // channels_per_group))
    while channels % groups:
        groups -= 1
    return groups


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(norm_groups(channels), channels)


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and an in-place ReLU.

    The convolutions have no bias: the normalisation that follows would cancel it.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: str, dropout: float = 0.0):
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            # Channel dropout: neighbouring pixels are correlated, so dropping single pixels
            # regularises little; whole feature maps make test-time dropout diverse.
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class UNet(nn.Module):
    """A 2D U-Net returning per-class logits.

    Level ``i`` (0 = full resolution) has ``base_channels * 2**i`` feature maps; the deepest
    level (``depth - 1``) is the bottleneck. Dropout sits in the levels ``i >= depth // 2``
    (the deeper encoder stages and the bottleneck), where it regularises without blurring
    boundaries.

    Parameters
    ----------
    config:
        The network's shape (:class:`~napari_distill.core.config.ModelConfig`).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        widths = [config.base_channels * 2**level for level in range(config.depth)]
        dropout_from = config.depth // 2
        self.encoders = nn.ModuleList()
        in_channels = config.in_channels
        for level, width in enumerate(widths):
            rate = config.dropout if level >= dropout_from else 0.0
            self.encoders.append(ConvBlock(in_channels, width, config.norm, rate))
            in_channels = width
        self.pool = nn.MaxPool2d(2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(config.depth - 2, -1, -1):  # from just above the bottleneck upwards
            self.upsamplers.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, 2))
            self.decoders.append(ConvBlock(2 * widths[level], widths[level], config.norm))
        self.head = nn.Conv2d(widths[0], config.num_classes, 1)
        # Deep supervision: one head per decoder level between the bottleneck and full
        # resolution, finest first (used by auxiliary_logits in training only).
        self.auxiliary_heads = nn.ModuleList(
            nn.Conv2d(widths[level], config.num_classes, 1)
            for level in range(1, config.depth - 1)
            if config.deep_supervision
        )
        # Channels of the maps returned by forward(return_features=True), coarsest first.
        self.feature_channels: tuple[int, ...] = tuple(reversed(widths))

    @property
    def size_multiple(self) -> int:
        """Inputs whose sides are multiples of this many pixels need no internal padding
        (after the reduction to the working scale, when ``config.downsample`` > 1)."""
        return 2 ** (self.config.depth - 1) * self.config.downsample

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        multiple = 2 ** (self.config.depth - 1)  # x is at the working scale here
        pad_h = -height % multiple
        pad_w = -width % multiple
        if not pad_h and not pad_w:
            return x  # no copy when the size already fits
        # Reflection keeps image statistics at the border; it needs the pad to be smaller
        # than the image, so tiny inputs repeat their edge instead.
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, K, H, W)`` for input ``(B, C_in, H, W)`` of any height and width.

        With ``config.downsample`` = d > 1 the input is first reduced to the working scale,
        ``ceil(H / d)`` x ``ceil(W / d)`` (block means), and the logits are upsampled back to
        ``H x W`` (bilinear).

        With ``return_features=True``, also the list of decoder feature maps, coarsest first:
        the bottleneck, then each decoder level up to the working scale (``len == depth``;
        channels in :attr:`feature_channels`). Map ``j`` covers the working-scale input
        (``h x w``) at scale ``1 / 2**(depth - 1 - j)``, cropped to ``ceil(h / 2**(depth - 1 -
        j))`` rows (and likewise columns) so it stays aligned with the unpadded input.
        """
        full_size = x.shape[-2:]
        if self.config.downsample > 1:
            factor = self.config.downsample
            working = (-(-full_size[0] // factor), -(-full_size[1] // factor))
            # Adaptive average pooling: exact block means where the size divides.
            x = F.adaptive_avg_pool2d(x, working)
        height, width = x.shape[-2:]
        out = self._pad(x)
        skips: list[torch.Tensor] = []
        for level, encoder in enumerate(self.encoders):
            if level > 0:
                out = self.pool(out)
            out = encoder(out)
            skips.append(out)
        features = [out] if return_features else []
        for offset, (upsample, decoder) in enumerate(
            zip(self.upsamplers, self.decoders, strict=True)
        ):
            skip = skips[-2 - offset]
            out = decoder(torch.cat((upsample(out), skip), dim=1))
            if return_features:
                features.append(out)
        logits = self.head(out)[..., :height, :width]
        if logits.shape[-2:] != full_size:
            logits = F.interpolate(logits, size=full_size, mode="bilinear", align_corners=False)
        if not return_features:
            return logits
        cropped = []
        for index, feature in enumerate(features):
            scale = 2 ** (len(features) - 1 - index)
            cropped.append(feature[..., : -(-height // scale), : -(-width // scale)])
        return logits, cropped

    def auxiliary_logits(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Deep-supervision logits from the maps of ``forward(x, return_features=True)``.

        One per auxiliary head, finest first, each at its own level's resolution (``1/2``,
        ``1/4``, ... of the input); empty without deep supervision.
        """
        if not self.auxiliary_heads:
            return []
        decoder_maps = features[1:-1]  # neither the bottleneck nor full resolution
        return [
            head(feature)
            for head, feature in zip(self.auxiliary_heads, reversed(decoder_maps), strict=True)
        ]


# Probabilities are clamped to this before their log, so a class every member rules out
# gets a large negative logit instead of -inf (which would make NaN in the students' KL).
MIN_PROBABILITY = 1e-8


def mean_log_probabilities(members: Sequence[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """Log of the mean softmax of ``members`` on ``x`` (its softmax is that mean).

    Computed in float32 whatever the autocast dtype; out of place, so gradients flow if a
    caller ever trains through it.
    """
    total = None
    for member in members:
        probabilities = torch.softmax(member(x).float(), dim=1)
        total = probabilities if total is None else total + probabilities
    if total is None:
        raise ValueError("the mean of no network")
    return (total / len(members)).clamp_min(MIN_PROBABILITY).log()


class MemberMean(nn.Module):
    """Some networks of one shape as one model: the mean of their probabilities."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    @property
    def size_multiple(self) -> int:
        """Inputs are padded internally to a multiple of this many pixels."""
        return int(getattr(self.members[0], "size_multiple", 1) or 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the members' mean softmax ``(B, K, H, W)``."""
        return mean_log_probabilities(self.members, x)


class ModelEnsemble(nn.Module):
    """Several U-Nets of one shape; the prediction is the mean of their probabilities.

    ``forward`` returns the log of that mean, so every caller that takes the softmax of a
    model's logits (prediction, the quality classifier's sources, the students' distillation
    targets) gets the ensemble's probabilities with no change. Training and validation go
    through :attr:`members`, one network at a time
    (:class:`~napari_distill.core.training.objectives.EnsembleObjective` gives each its own
    slices and patches, :class:`~napari_distill.core.training.objectives.EnsembleValidator`
    scores each on the slices it held out).

    With :attr:`ModelConfig.views` the members slice the volume along different axes: a
    single slice (or patch) can only be seen along the first, so ``forward`` averages the
    members of axis 0; the whole stack is predicted by every member along its own axis in
    :func:`~napari_distill.core.inference.views.predict_views`.

    Parameters
    ----------
    config:
        The members' shape and their number (:attr:`ModelConfig.members`); members are
        initialised one after the other from torch's random state, so each starts elsewhere.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(UNet(config.single()) for _ in range(config.members))

    @property
    def size_multiple(self) -> int:
        """Inputs are padded internally to a multiple of this many pixels."""
        return self.members[0].size_multiple

    def members_along(self, axis: int) -> list[nn.Module]:
        """The members that slice the stack along ``axis`` (all of them without views)."""
        return [
            member
            for index, member in enumerate(self.members)
            if self.config.member_axis(index) == axis
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the mean softmax ``(B, K, H, W)`` of the members along the first axis."""
        return mean_log_probabilities(self.members_along(0), x)


def build_model(config: ModelConfig) -> UNet | ModelEnsemble:
    """The network described by ``config`` (freshly initialised): a U-Net, an ensemble of
    them when ``config.members > 1``, or a two-decoder U-Net when ``config.decoders == 2``."""
    if config.members > 1:
        return ModelEnsemble(config)
    if config.decoders == 2:
        from .branched import BranchedUNet  # it subclasses UNet, defined here

        return BranchedUNet(config)
    return UNet(config)


def ensemble_members(model: nn.Module) -> list[nn.Module]:
    """The networks of an ensemble, or ``[model]`` for a single network."""
    if isinstance(model, ModelEnsemble):
        return list(model.members)
    return [model]


def slice_members(model: nn.Module) -> list[nn.Module]:
    """The networks of ``model`` that predict a slice on its own: every member of an
    ensemble but those of a views ensemble that slice along another axis (see
    :class:`ModelEnsemble`), or ``[model]`` for a single network."""
    if isinstance(model, ModelEnsemble):
        return model.members_along(0)
    return [model]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def enable_dropout(model: nn.Module) -> int:
    """Switch the dropout layers of ``model`` to training mode (test-time / MC dropout).

    Call after ``model.eval()``: normalisation layers stay in evaluation mode. Returns the
    number of dropout layers switched on (0 means the model has no dropout).
    """
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Dropout | nn.Dropout2d | nn.Dropout3d | nn.AlphaDropout):
            module.train()
            count += 1
    return count
