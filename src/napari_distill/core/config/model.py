"""The network's shape: :class:`ModelConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .common import MAX_DOWNSAMPLE, MAX_MEMBERS, VIEW_AXES


@dataclass(frozen=True)
class ModelConfig:
    """A 2D U-Net.

    Attributes
    ----------
    in_channels:
        Input channels: colour channels x (2 * context_slices + 1).
    num_classes:
        Output channels, background included.
    base_channels:
        Feature maps at the first level; doubled at every level down.
    depth:
        Number of resolution levels (depth - 1 poolings).
    dropout:
        Dropout probability in the encoder's deeper stages (also used for test-time dropout).
    norm:
        ``"batch"`` (BatchNorm: on the CPU it learns about twice as fast per step as GroupNorm
        at the same cost, and its evaluation is local, so tiles agree) or ``"group"``
        (GroupNorm: for batches of one).
    context_slices:
        Neighbouring slices on each side fed as extra channels (2.5D); 0 is plain 2D.
    deep_supervision:
        A 1x1 classification head on each decoder level between the bottleneck and full
        resolution, trained with the main head (:class:`~napari_distill.core.training.objectives
        SupervisedObjective`) and unused at prediction: coarse levels learn to segment too,
        which steadies training from a few slices (docs/benchmarks.md, "Levers measured").
        Checkpoints written before this option have no such heads and load with it off.
    downsample:
        The network's working scale: it sees each slice (or patch, or tile) reduced by this
        integer factor (block means) and its logits are upsampled back (bilinear), so labels
        and probabilities keep the image's pixels. For slices much larger than the structures
        need: at half the pixels per side a network of the same depth and patch sees twice as
        much of the slice for the same network cost (the losses are still taken at the image's
        pixels; docs/benchmarks.md, "Resolution"); structures
        thinner than a few pixels at the working scale are lost. 1 is the full resolution.
    members:
        Networks of this shape trained side by side, each from its own initial weights and on
        its own patches, holding out its own validation slices where it can
        (:func:`~napari_distill.core.training.splits.member_splits`); the model's prediction is
        the mean of their probabilities (a deep ensemble,
        :class:`~napari_distill.core.models.ModelEnsemble`). One network can miss an organ by
        the luck of its training where the mean of several does not (docs/benchmarks.md,
        "Teacher ensembles"); each member costs as much as a single network to train and to
        run. Students are always single networks.
    views:
        For a volume: member ``m`` of the ensemble sees the stack sliced along axis ``m % 3``
        (:func:`member_axis`). The members on the two other axes see each painted slice
        edge-on, as painted rows of their slices, and learn from those rows only (the other
        rows weigh nothing in their loss), so each painted slice teaches them how an organ
        continues through the slices around it; the prediction is the mean of every member's
        probabilities, each predicted along its own axis
        (:mod:`~napari_distill.core.inference.views`).
        Needs at least three members and a stack of slices, not a single image nor a stack of
        unrelated fields (docs/benchmarks.md, "Three views").
    decoders:
        Decoders sharing the one encoder: 1 is a U-Net; 2 is the ``mixed`` strategy's network
        (:class:`~napari_distill.core.models.BranchedUNet`), a teacher branch that learns from
        full masks and a student branch that learns from weak labels and from the teacher.
    """

    in_channels: int = 1
    num_classes: int = 2
    base_channels: int = 16
    depth: int = 4
    dropout: float = 0.1
    norm: str = "batch"
    context_slices: int = 0
    deep_supervision: bool = True
    downsample: int = 1
    members: int = 1
    views: bool = False
    decoders: int = 1

    def __post_init__(self) -> None:
        if self.in_channels < 1 or self.num_classes < 2:
            raise ValueError(
                f"a model needs at least 1 input channel and 2 classes, got "
                f"in_channels={self.in_channels}, num_classes={self.num_classes}"
            )
        if self.depth < 2 or self.base_channels < 2:
            raise ValueError("depth must be >= 2 and base_channels >= 2")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in ("group", "batch"):
            raise ValueError(f"norm must be 'group' or 'batch', got {self.norm!r}")
        if not 1 <= self.downsample <= MAX_DOWNSAMPLE:
            raise ValueError(
                f"downsample (the network's working scale) must be a whole factor between 1 "
                f"and {MAX_DOWNSAMPLE}, got {self.downsample}"
            )
        if not 1 <= self.members <= MAX_MEMBERS:
            raise ValueError(
                f"members (teachers in an ensemble) must be between 1 and {MAX_MEMBERS}, "
                f"got {self.members}"
            )
        if self.decoders not in (1, 2) or (self.decoders == 2 and self.members > 1):
            raise ValueError(
                f"decoders must be 1, or 2 for a single network, got {self.decoders} with "
                f"{self.members} member(s)"
            )
        if self.views and self.members < VIEW_AXES:
            raise ValueError(
                f"views (members slicing the volume along its three axes) need at least "
                f"{VIEW_AXES} members, got {self.members}"
            )

    def image_pixels(self, working_pixels: int) -> int:
        """A length at the network's working scale (a patch side), in the image's pixels."""
        return working_pixels * self.downsample

    def single(self) -> ModelConfig:
        """The configuration of one member (this configuration with ``members=1``)."""
        return dataclasses.replace(self, members=1, views=False)

    def member_axis(self, member: int) -> int:
        """The axis of the stack that member ``member`` slices along (0 without views)."""
        return member % VIEW_AXES if self.views else 0

    def larger(self) -> ModelConfig:
        """A wider student: twice the channels at every level, the same depth (about four
        times the compute). One network without deep-supervision heads, like :meth:`student`."""
        return dataclasses.replace(
            self, members=1, views=False, base_channels=2 * self.base_channels,
            deep_supervision=False,
        )  # fmt: skip

    def student(self) -> ModelConfig:
        """The cheaper student configuration: half the channels, one level fewer (min 3).

        Never deeper or wider than this configuration (a shallow teacher keeps its depth).
        No deep-supervision heads: the students' distillation losses use the main head only.
        A single network, even when this configuration is an ensemble.
        """
        return dataclasses.replace(
            self,
            members=1,
            views=False,
            base_channels=min(self.base_channels, max(4, self.base_channels // 2)),
            depth=min(self.depth, max(3, self.depth - 1)),
            deep_supervision=False,
        )
