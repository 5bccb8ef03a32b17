"""A teacher's settings planned from the data (the idea of nnU-Net: a fingerprint of the data
sets the configuration), each decision with its reason in plain words.

:func:`plan_teacher` turns a :class:`~.fingerprint.DataFingerprint` and the device into a
:class:`TeacherPlan`: a list of :class:`Decision` (setting, value, reason, and whether the
user set it) that :meth:`TeacherPlan.apply` writes into a ``ModelConfig`` and a
``TrainConfig``. :func:`~.teacher.train_teacher` takes the plan, logs every decision and
stores it in the checkpoint (``extra["plan"]``). A setting the user gives (``given``) always
wins; its decision says what the plan would have chosen.

Every rule is stated in the data's own measurements (no size or intensity of any sample):

- **Working scale** (``downsample``): the smallest factor at which one patch holds the largest
  painted piece whole (``patch_size * downsample >= its extent``), but no larger than lets one
  whole working pixel (a block of ``downsample``\\ :sup:`2` image pixels) fit inside the
  thinnest painted class wherever the blocks fall (``2 * downsample - 1 <= its thickness``).
- **Views**: on for a volume (one colour, at least ``2 ** (depth - 1)`` slices so the other
  axes survive the network's halvings, neighbouring slices correlated at r >= 0.5) in which a
  typical painted structure spans at least 3 slices (its in-plane extent converted by the
  voxel spacing): the networks along the other axes then see structures continue.
- **Validation**: no slice is held out when the split would hold out fewer than
  :data:`~.splits.MIN_SLICES_FOR_EARLY_STOPPING` (too few to stop early on: they only take
  paint away; measured +0.006 mIoU at six slices, docs/benchmarks.md "Levers measured").
- **Intensities**: clipped to the painted foreground's 0.5-99.5 % window when the whole
  image's 1-99 % window is more than twice as wide (most of the range would go to what was not
  painted: air, a table, metal); colour images keep their per-channel window.
- **Batch and steps**: from the device (the CPU keeps the measured default batch; a GPU
  fills half its free memory at an estimated cost per patch) and the painted pixels
  (:func:`~.schedule.auto_steps`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..config import MAX_DOWNSAMPLE, VIEW_AXES, ModelConfig, TrainConfig
from .fingerprint import IMAGE_PERCENTILES, DataFingerprint, measure
from .schedule import auto_steps
from .splits import MIN_SLICES_FOR_EARLY_STOPPING

logger = logging.getLogger(__name__)

# setting -> the config that holds it ("model": ModelConfig, "train": TrainConfig)
PLANNED = {
    "patch_size": "train",
    "downsample": "model",
    "views": "model",
    "members": "model",
    "validation_fraction": "train",
    "batch_size": "train",
    "clip_to_foreground": "train",
    "steps": "train",
}
VOLUME_CORRELATION = 0.5  # neighbouring slices at least this alike continue each other
MIN_SLICES_SPANNED = 3  # a structure seen continuing: the painted slice and one either side
WINDOW_RATIO = 2.0  # the image's window this many times the painted one's: clip to the latter
MAX_BATCH = 64
# Bytes per pixel at the working scale and per base channel of a U-Net's training (features,
# normalisation, activations and their gradients over the levels): an estimate for GPU batches.
TRAIN_BYTES_PER_PIXEL_CHANNEL = 256


@dataclass(frozen=True)
class Decision:
    """One planned setting: its value, why, and whether the user set it (``source``)."""

    setting: str
    value: Any
    reason: str
    source: str = "plan"  # "plan" or "user"

    def value_text(self) -> str:
        if isinstance(self.value, bool):
            return "on" if self.value else "off"
        if self.value is None:
            return "auto"
        return f"{self.value:g}" if isinstance(self.value, float) else str(self.value)

    def text(self) -> str:
        """``"downsample 2 - the largest painted piece ..."``, as logged and shown."""
        return f"{self.setting} {self.value_text()} — {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TeacherPlan:
    """The planned settings of a teacher and the measurements they come from.

    Attributes
    ----------
    decisions:
        One :class:`Decision` per setting of :data:`PLANNED`, in the order they were made.
    fingerprint:
        :meth:`DataFingerprint.to_dict` of the data planned for (plain values).
    """

    decisions: tuple[Decision, ...]
    fingerprint: dict[str, Any] = dataclasses.field(default_factory=dict)

    def decision(self, setting: str) -> Decision:
        return next(d for d in self.decisions if d.setting == setting)

    def values(self) -> dict[str, Any]:
        """``{setting: value}`` of every decision."""
        return {d.setting: d.value for d in self.decisions}

    def apply(
        self, model_config: ModelConfig | None, train_config: TrainConfig | None
    ) -> tuple[ModelConfig, TrainConfig]:
        """``model_config`` and ``train_config`` (None: the defaults) with the plan's values."""
        changes: dict[str, dict[str, Any]] = {"model": {}, "train": {}}
        for d in self.decisions:
            changes[PLANNED[d.setting]][d.setting] = d.value
        return (
            dataclasses.replace(model_config or ModelConfig(), **changes["model"]),
            dataclasses.replace(train_config or TrainConfig(), **changes["train"]),
        )

    def lines(self) -> list[str]:
        """One line per decision, ``"plan: ..."`` or ``"set: ..."`` (the user's)."""
        return [f"{'plan' if d.source == 'plan' else 'set'}: {d.text()}" for d in self.decisions]

    def log(self, log: logging.Logger = logger) -> None:
        for line in self.lines():
            log.info("%s", line)

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and lists, for a ``weights_only`` checkpoint (``extra["plan"]``)."""
        return {
            "decisions": [d.to_dict() for d in self.decisions],
            "fingerprint": dict(self.fingerprint),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TeacherPlan:
        decisions = tuple(Decision(**d) for d in values.get("decisions", ()))
        return cls(decisions, dict(values.get("fingerprint") or {}))


def _class_name(class_id: int, names: Mapping[int, str] | None) -> str:
    return f"class {class_id}" + (f" ({names[class_id]})" if names and class_id in names else "")


def _working_scale(
    fp: DataFingerprint, patch: int, names: Mapping[int, str] | None
) -> tuple[int, str]:
    largest, thinnest = fp.largest, fp.thinnest
    size = f"the slice is {fp.height} x {fp.width} px"
    if largest is None or thinnest is None:
        return 1, f"{size} and nothing is painted to size it from: full resolution"
    need = max(1, math.ceil(largest.extent / patch))
    cap = max(1, (thinnest.thickness + 1) // 2)
    factor = max(1, min(need, cap, MAX_DOWNSAMPLE))
    spans = f"{size}; its largest painted piece, {_class_name(largest.class_id, names)}, spans "
    spans += f"{largest.extent} px"
    if need == 1:
        return 1, f"{spans}, within one {patch}-px patch: full resolution"
    covers = f"a {patch}-px patch at 1/{factor} covers {patch * factor} px"
    thinnest_name = _class_name(thinnest.class_id, names)
    thin = f"the thinnest, {thinnest_name}, is {thinnest.thickness} px thick"
    if factor < need:
        return factor, (
            f"{spans} and would need 1/{need} to fit in one patch, but {thin} and keeps a whole "
            f"working pixel only up to 1/{cap}"
            + (f" (the most allowed is 1/{MAX_DOWNSAMPLE})" if cap > MAX_DOWNSAMPLE else "")
            + f": {covers}"
        )
    return factor, f"{spans}: {covers}, holding it whole; {thin}, still a whole working pixel"


def _views(fp: DataFingerprint, depth: int) -> tuple[bool, str]:
    min_slices = 2 ** (depth - 1)
    if fp.rgb:
        return False, "colour images: a stack of separate fields, not a volume"
    if fp.n_slices < min_slices:
        return False, (
            f"{fp.n_slices} slice(s): fewer than the {min_slices} rows the network's "
            f"{depth - 1} halvings need along the volume's other axes"
        )
    r = fp.neighbour_correlation
    if r is None or r < VOLUME_CORRELATION:
        return False, (
            f"neighbouring slices correlate at r = {r if r is not None else 0:.2f} (below "
            f"{VOLUME_CORRELATION}): separate fields, not a volume"
        )
    extent = float(np.median([c.extent for c in fp.classes])) if fp.classes else 0.0
    ratio = fp.slice_spacing_ratio
    spans = extent / ratio
    spacing = "x".join(f"{s:g}" for s in fp.spacing)
    what = (
        f"a volume (neighbouring slices correlate at r = {r:.2f}; spacing {spacing}, slices "
        f"{ratio:.2g} x the pixel size apart) whose median painted structure spans {extent:g} px "
        f"in-plane, about {spans:.1f} slices"
    )
    if spans < MIN_SLICES_SPANNED:
        return False, f"{what}: fewer than {MIN_SLICES_SPANNED}, too few to see it continue"
    return True, (
        f"{what}: networks along the other two axes see the structures continue between the "
        f"painted slices (three networks: three times the training time)"
    )


def _held_out(n_painted: int, fraction: float) -> int:
    if n_painted < 3 or fraction <= 0:
        return 0
    return min(n_painted - 1, max(1, round(fraction * n_painted)))


def _validation(fp: DataFingerprint, fraction: float, members: int) -> tuple[float, str]:
    k = fp.n_painted
    held = _held_out(k, fraction)
    if held == 0:
        return fraction, f"{k} painted slice(s): too few to hold any out; validated on them"
    if held < MIN_SLICES_FOR_EARLY_STOPPING and members > 1:
        return fraction, (
            f"{k} painted slices, {members} networks: each holds out {held} other slice(s), as "
            f"cross-validation folds do, so together they still learn from every painted "
            f"slice, and each held-out slice scores the teacher against label propagation "
            f"(at six slices 0.785 and 0.784 mIoU against 0.781 and 0.774 with none held out: "
            f"within the seeds' spread, docs/benchmarks.md)"
        )
    if held < MIN_SLICES_FOR_EARLY_STOPPING:
        return 0.0, (
            f"{k} painted slices: holding out {held} would take {held / k:.0%} of the paint "
            f"away, and fewer than {MIN_SLICES_FOR_EARLY_STOPPING} held-out slices are too few "
            f"to stop early on (the final weights are kept anyway): every painted slice trains "
            f"(no slice is left to score the teacher against label propagation: train 3 "
            f"teachers for that)"
        )
    return fraction, f"{k} painted slices: {held} held out (enough to stop on), {k - held} train"


def _batch(
    fp: DataFingerprint,
    device: torch.device,
    base: int,
    model: ModelConfig,
    patch: int,
    free_memory: int | None,
) -> tuple[int, str]:
    if device.type == "cpu":
        return base, (
            f"on the CPU a step's time grows with its patches: the default {base} small patches "
            "a step"
        )
    if free_memory is None:
        from ..device import free_memory_bytes

        free_memory = free_memory_bytes(device)
    per_patch = TRAIN_BYTES_PER_PIXEL_CHANNEL * model.base_channels * patch * patch * model.members
    fits = int(0.5 * free_memory // max(1, per_patch))
    batch = max(base, min(MAX_BATCH, 2 ** int(math.log2(max(1, fits)))))
    return batch, (
        f"{free_memory / 1e9:.1f} GB free on {device}: about {per_patch / 1e6:.0f} MB per "
        f"{patch}-px patch, so {batch} patches a step use at most half of it (at most {MAX_BATCH})"
    )


def _clip(fp: DataFingerprint) -> tuple[bool, str]:
    if fp.colours > 1:
        return False, "colour images: each channel keeps its own 1-99 % window over the image"
    if not fp.foreground_window or not fp.image_window:
        return False, "nothing painted: the whole image's 1-99 % window, unclipped"
    (flo, fhi), (ilo, ihi) = fp.foreground_window[0], fp.image_window[0]
    ratio = (ihi - ilo) / max(fhi - flo, 1e-12)
    low, high = IMAGE_PERCENTILES
    painted = f"the painted structures' 0.5-99.5 % window is {flo:g} to {fhi:g}"
    image = f"the whole image's {low:g}-{high:g} % window {ilo:g} to {ihi:g}"
    if ratio > WINDOW_RATIO:
        return True, (
            f"{painted}, {image} is {ratio:.1f} x wider: clipped to the painted window, so "
            "their contrast is not spent on what was not painted"
        )
    return False, f"{painted}; {image} ({ratio:.1f} x as wide) keeps their contrast: unclipped"


def plan_teacher(
    fingerprint: DataFingerprint,
    device: str | torch.device = "cpu",
    *,
    given: Mapping[str, Any] | None = None,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    class_names: Mapping[int, str] | None = None,
    free_memory: int | None = None,
    one_axis: str | None = None,
) -> TeacherPlan:
    """Plan a teacher's settings from the data's measurements (see the module's rules).

    Parameters
    ----------
    fingerprint:
        :func:`~.fingerprint.measure` of the image and its painted labels.
    device:
        Where it will train (``"cpu"``, ``"cuda"``, a torch device; not ``"auto"``).
    given:
        ``{setting: value}`` the user chose (keys of :data:`PLANNED`): kept as given, the
        decision saying what the plan would have chosen.
    model_config, train_config:
        The settings the plan does not touch (depth, base channels, patch size unless
        planned...); their values of planned settings are ignored unless ``given``.
    class_names:
        ``{class id: name}`` for the reasons.
    free_memory:
        Bytes free on an accelerator (None: asked of the device).
    one_axis:
        Why the data can only be sliced along its first axis (e.g. several volumes end to end
        in one stack): views off, for this reason (a ``views`` given off is taken as such).

    Raises
    ------
    ValueError
        An unknown setting given, or views given on with ``one_axis``.
    """
    given = dict(given or {})
    if one_axis is not None and given.pop("views", False):
        raise ValueError(f"views cannot be used here: {one_axis}")
    unknown = sorted(set(given) - set(PLANNED))
    if unknown:
        raise ValueError(f"not planned settings {unknown}: the plan sets {sorted(PLANNED)}")
    device = torch.device(device)
    model = model_config or ModelConfig()
    train = train_config or TrainConfig()
    decisions: list[Decision] = []

    def decide(setting: str, value: Any, reason: str) -> Any:
        if setting not in given:
            decisions.append(Decision(setting, value, reason))
            return value
        chosen = Decision(setting, given[setting], "").value_text()
        planned = Decision(setting, value, "").value_text()
        text = "set by the user" + ("" if chosen == planned else f"; the plan: {planned}")
        decisions.append(Decision(setting, given[setting], f"{text} ({reason})", "user"))
        return given[setting]

    patch = decide(
        "patch_size",
        train.patch_size,
        "pixels at the working scale; the field of view is set by the working scale below",
    )
    factor = decide("downsample", *_working_scale(fingerprint, patch, class_names))
    views, reason = (False, one_axis) if one_axis else _views(fingerprint, model.depth)
    members_given = given.get("members")
    if views and members_given is not None and members_given < VIEW_AXES:
        views = False
        reason = f"{reason}; but views need {VIEW_AXES} networks and {members_given} was set"
    views = decide("views", views, reason)
    if views:
        members = decide(
            "members", max(VIEW_AXES, model.members), "one network along each of the 3 axes"
        )
    else:
        alone = "one network" if model.members == 1 else f"{model.members} networks side by side"
        members = decide("members", model.members, f"{alone}, along the slices")
    decide("validation_fraction", *_validation(fingerprint, train.validation_fraction, members))
    planned_model = dataclasses.replace(model, downsample=factor, members=members, views=views)
    batch = decide(
        "batch_size",
        *_batch(fingerprint, device, train.batch_size, planned_model, patch, free_memory),
    )
    decide("clip_to_foreground", *_clip(fingerprint))
    painted = fingerprint.n_painted * fingerprint.height * fingerprint.width
    expected = auto_steps(painted, device, batch, patch * factor)
    each = "" if members == 1 else f" (each trains {members} networks)"
    decide(
        "steps",
        train.steps,
        f"about {expected} steps{each}: some 150 looks at each painted pixel, bounded for "
        f"the {'CPU' if device.type == 'cpu' else device.type}"
        if train.steps is None
        else "as configured",
    )
    return TeacherPlan(tuple(decisions), fingerprint.to_dict())


def plan_for_data(
    image: np.ndarray,
    labels: np.ndarray,
    *,
    spacing: Any = None,
    rgb: bool | None = None,
    device: str | torch.device = "auto",
    **kwargs: Any,
) -> TeacherPlan:
    """:func:`measure` then :func:`plan_teacher` (``kwargs``: its keyword arguments)."""
    from ..device import select_device

    fingerprint = measure(image, labels, spacing, rgb)
    return plan_teacher(fingerprint, select_device(device), **kwargs)
