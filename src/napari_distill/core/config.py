"""Every hyperparameter of napari-distill, as frozen dataclasses with defaults and units.

A config is stored in checkpoints as a plain dict (``dataclasses.asdict``) so that checkpoints
load with ``torch.load(weights_only=True)``; ``from_dict`` rebuilds it and ignores unknown keys
so that older checkpoints keep loading after a setting is added.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
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


@dataclass(frozen=True)
class TrainConfig:
    """Supervised training of a network from annotated slices.

    ``steps=None`` lets the trainer choose a budget from the data and the device, and early
    stopping ends it when the validation score stops improving (a teacher stops early only
    when it has at least three validation slices: fewer score too noisily to act on).
    """

    steps: int | None = None
    # Many small patches learn faster per step than a few large ones (more places and organs
    # per batch, steadier BatchNorm statistics) at about the same cost.
    batch_size: int = 8
    # Pixels at the network's working scale (the image's pixels / ModelConfig.downsample);
    # patches never exceed the slice, so small images still work.
    patch_size: int = 96
    learning_rate: float = 5e-3  # peak AdamW rate (warm-up, then cosine decay)
    weight_decay: float = 1e-4
    validation_fraction: float = 0.2  # of annotated slices, at least one when there are >= 3
    validate_every: int = 25  # steps
    patience: int = 8  # validations without improvement before stopping early
    # When the planned schedule completes, keep the final weights (the learning rate has
    # annealed) rather than the best-validating ones: with a few annotated slices the
    # validation score rests on one or two slices and picks a checkpoint by its noise (as
    # nnU-Net keeps its final checkpoint). A run stopped early, by the user or by the time
    # budget keeps its best; a fine-tuned student always keeps its best (see TrainingRun).
    keep_final: bool = True
    foreground_fraction: float = 0.7  # share of patches centred on a labelled foreground pixel
    class_weighting: bool = True  # inverse-sqrt frequency weights, so small organs count
    dice_weight: float = 1.0  # L = CE + dice_weight * soft Dice
    augment: bool = True  # flips, 90-degree rotations, intensity scale/shift, noise
    # Intensity scale and shift range, in normalised units. Small: the model is trained and
    # used on the same stack, where the intensity of a tissue is the best cue it has.
    intensity_jitter: float = 0.05
    # Intensities clipped to the painted foreground's 0.5-99.5 % window (nnU-Net's CT rule;
    # Normalization.from_foreground) instead of all voxels' 1-99 % window, unclipped.
    clip_to_foreground: bool = False
    elastic: bool = False  # elastic deformation (slower)
    seed: int = 0
    max_minutes: float | None = None  # wall-clock budget on top of steps

    def __post_init__(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.batch_size < 1 or self.patch_size < 16:
            raise ValueError("batch_size must be >= 1 and patch_size >= 16")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must be in [0, 1)")
        if not 0.0 <= self.intensity_jitter < 1.0:
            raise ValueError(f"intensity_jitter must be in [0, 1), got {self.intensity_jitter}")


@dataclass(frozen=True)
class PredictConfig:
    """Tiled sliding-window prediction.

    ``tile_size=None`` derives the tile from the memory free on the device: a whole slice is
    one tile where it fits.
    """

    tile_size: int | None = None  # pixels (square tiles); None = from device memory
    overlap: float = 0.25  # fraction of the tile shared with its neighbour
    batch_size: int = 4  # tiles per forward pass
    crop_to_tissue: bool = True  # predict only the bounding box of non-background intensity
    skip_empty_tiles: bool = True  # tiles with no tissue get background without a forward pass
    amp: bool = True  # bf16/fp16 autocast on GPUs; ignored on the CPU
    # Test-time mirroring: average the probabilities of the slice and of its three mirror
    # images (flipped left-right, up-down, both). Four times the prediction time for a small,
    # steady gain (docs/benchmarks.md: +0.4 to +1.4 mIoU points on the Medaka sample).
    mirror: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 0.9:
            raise ValueError(f"overlap must be in [0, 0.9), got {self.overlap}")
        if self.tile_size is not None and self.tile_size < 16:
            raise ValueError("tile_size must be >= 16 pixels")


@dataclass(frozen=True)
class QualityConfig:
    """The quality classifier of method 1: predicts the IoU of a pseudo-label per slice."""

    tau: float = 0.7  # slices scoring >= tau are accepted
    base_channels: int = 16
    input_size: int = 128  # slice and probabilities are resized to this square for the CNN
    steps: int = 300
    learning_rate: float = 1e-3
    variants_per_slice: int = 8  # pseudo-labels of varied quality made per annotated slice
    holdout_fraction: float = 0.25  # annotated slices kept aside to report Spearman
    seed: int = 0
    batch_size: int = 16  # classifier inputs per optimiser step
    per_class_head: bool = False  # also predict the IoU of every foreground class

    def __post_init__(self) -> None:
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must be in [0, 1], got {self.tau}")
        if self.input_size < 16 or self.steps < 1 or self.batch_size < 1:
            raise ValueError("input_size must be >= 16, steps and batch_size >= 1")
        if self.variants_per_slice < 0 or not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError("variants_per_slice must be >= 0 and holdout_fraction in [0, 1)")


@dataclass(frozen=True)
class KDConfig:
    """Strategy ``kd``: L = CE(student, pseudo) + lambda_kd * T^2 * KL(teacher || student)."""

    temperature: float = field(
        default=2.0,
        metadata={
            "label": "Temperature T",
            "min": 0.1,
            "max": 20.0,
            "help": "How much of the teacher's hesitation the student learns. The teacher "
            "gives every pixel a probability per class; a higher T evens them out, so the "
            "student also learns which class came second (liver or gut, at their border), "
            "not only the winner. 1 passes them on as they are. Rarely worth changing.",
        },
    )
    lambda_kd: float = field(
        default=1.0,
        metadata={
            "label": "KD weight (lambda)",
            "min": 0.0,
            "max": 100.0,
            "help": "How much the student learns from the teacher's probabilities (how sure "
            "the teacher is of each class at each pixel) beside the teacher's labels on the "
            "accepted slices. 0 learns the labels only (plain self-training); 1 counts both "
            "alike; more follows the teacher's probabilities more closely.",
        },
    )
    init_from_teacher: bool = field(
        default=True,
        metadata={
            "label": "Start from the teacher's weights",
            "help": "Start from a copy of the teacher and refine it (faster, usually "
            "better); off trains a new network from scratch.",
        },
    )
    smaller_student: bool = field(
        default=False,
        metadata={
            "label": "Smaller, faster student",
            "help": "A network half as wide and one level shallower than the teacher: "
            "faster to train and to predict, possibly a little less accurate; always trained "
            "from scratch.",
        },
    )
    # METHODS.md: annotated slices learn from their ground truth, kept slices from the teacher.
    # Measured (docs/benchmarks.md): the KL term on annotated slices too pulled an undertrained
    # teacher's students 7 mIoU points below the teacher alone.
    kd_on_annotated: bool = field(
        default=False,
        metadata={
            "label": "KD on annotated slices too",
            "help": "Also learn the teacher's probabilities on the annotated slices (else "
            "only on the accepted slices; on the annotated slices the student learns your "
            "labels). Off is better while the teacher is still weak.",
        },
    )

    # Without a fixed share, patches came from each kind in proportion to its slices: 27
    # accepted slices beside 5 annotated ones left the ground truth 1 patch in 6, and the
    # student drifted from what the teacher had learnt (docs/benchmarks.md, "Students").
    annotated_share: float = field(
        default=0.5,
        metadata={
            "label": "Annotated share",
            "min": 0.0,
            "max": 1.0,
            "help": "Share of the training patches drawn from the annotated slices (ground "
            "truth); the rest come from the accepted slices. Used when there are both.",
        },
    )

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"the temperature must be > 0, got {self.temperature}")
        if self.lambda_kd < 0:
            raise ValueError(f"lambda_kd must be >= 0, got {self.lambda_kd}")
        if not 0.0 <= self.annotated_share <= 1.0:
            raise ValueError(f"annotated_share must be in [0, 1], got {self.annotated_share}")


@dataclass(frozen=True)
class InstanceConfig:
    """Turning probabilities into labels."""

    mode: str = "semantic"  # "semantic" (one label per class, CT organs) or "instances" (cells)
    keep_largest_component: bool = False  # per class, per volume (CT organs are one piece)
    # With keep_largest_component: only these class ids (empty: every class); leave out
    # classes of several bodies (a pair of eyes, a column of vertebrae).
    largest_component_classes: tuple[int, ...] = field(default=())
    min_size: int = 0  # pixels (2D) / voxels (3D); smaller objects are removed
    instance_classes: tuple[int, ...] = field(default=())  # class ids split into instances
    min_distance: int = 3  # pixels between watershed seeds


@dataclass(frozen=True)
class PropagationConfig:
    """Labels for unpainted slices from the painted ones, without learning
    (:mod:`napari_distill.core.inference.propagation`; docs/benchmarks.md, "Propagation").

    ``method="nearest"`` copies the nearest painted slice (at equal distance, the one below:
    the lower index). ``"flow"`` carries each painted slice's labels outward, slice by slice,
    along the optical flow between neighbouring slices, and blends the labels arriving from
    the painted slice below and the one above with weights inversely proportional to their
    distances; beyond the outermost painted slices only one direction exists.
    """

    method: str = "flow"  # "nearest" or "flow"
    flow: str = "tvl1"  # estimator: skimage's optical_flow_tvl1 ("tvl1") or optical_flow_ilk
    # TV-L1 data term weight (dimensionless, on intensities in [0, 1]): larger follows the
    # grey values more closely, smaller gives smoother flows (skimage's default).
    attachment: float = 15.0
    radius: int = 7  # pixels: the ILK window's half-width
    # Percent: the image's robust intensity window, mapped to [0, 1] and clipped before the
    # flow, so that noise in air and outliers in bone do not drive it.
    percentiles: tuple[float, float] = (1.0, 99.0)
    # MB of flows between neighbouring slices kept for reuse (16 bytes per pixel and pair for
    # both directions): the leave-one-out estimate then reuses the propagation's flows.
    cache_mb: float = 1024.0

    def __post_init__(self) -> None:
        if self.method not in ("nearest", "flow") or self.flow not in ("tvl1", "ilk"):
            raise ValueError(
                f"method must be 'nearest' or 'flow' and flow 'tvl1' or 'ilk', got "
                f"method={self.method!r}, flow={self.flow!r}"
            )
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0 or self.attachment <= 0 or self.radius < 1:
            raise ValueError(
                "percentiles must be 0 <= low < high <= 100, attachment > 0 and radius >= 1"
            )
        if self.cache_mb < 0:
            raise ValueError(f"cache_mb must be >= 0, got {self.cache_mb}")
