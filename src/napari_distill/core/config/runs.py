"""How models train, predict, score and clean up: the configs of every stage after the network's
shape (:mod:`.model`)."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    # Self-training's recipe (Xie et al. 2020, "noisy student"): a student as large as its
    # teacher or larger, noised while the teacher is not. Both off by default: on the synthetic
    # many-fish benchmark (300 steps) the noise cost 8 points on every seed and a larger
    # student from scratch 14 (docs/benchmarks.md, "Student settings").
    larger_student: bool = field(
        default=False,
        metadata={
            "label": "Larger student",
            "help": "A network twice as wide as the teacher (about four times the compute per "
            "step): room to learn more than the teacher from many pseudo-labelled images. "
            "Always trained from scratch, so it needs more steps.",
        },
    )
    noisy_student: bool = field(
        default=False,
        metadata={
            "label": "Noise on the student only",
            "help": "The student sees each patch with strong changes of brightness and "
            "contrast and added noise, and trains with more dropout, while the teacher's "
            "targets come from the clean patch: the student has to be right where the "
            "teacher had it easy.",
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
        if self.smaller_student and self.larger_student:
            raise ValueError("a student cannot be both smaller and larger: choose one")


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
