"""One checkpoint file per model: weights, configs, classes, normalisation, step, optimiser.

The file is a dict of plain Python values and tensors, so it loads with
``torch.load(weights_only=True)``: opening a checkpoint never runs code from the file.
Saving is atomic: a crash or a full disk mid-save leaves the previous file as it was.

Keys: ``format`` (``"napari-distill"``), ``format_version``, ``kind`` (``"teacher"``,
``"student"``, ``"quality"``, ...), ``model_config``, ``state_dict``, ``class_ids``,
``class_names`` (``{str(class_id): name}``), ``normalization``, ``step``,
``optimizer_state`` (or None), ``train_config`` (or None), ``extra`` and, in checkpoints
written for resuming, ``resume`` (see :meth:`napari_distill.core.training.TrainingRun.save`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ModelConfig, TrainConfig, from_dict, to_dict
from ..preprocess import Normalization
from .networks import build_model

logger = logging.getLogger(__name__)

FORMAT = "napari-distill"
FORMAT_VERSION = 1

_PLAIN = (type(None), bool, int, float, str, torch.Tensor)


class CheckpointError(ValueError):
    """A file is not a readable napari-distill checkpoint (missing, corrupt, foreign, unsafe)."""


@dataclass
class ModelBundle:
    """A model and everything needed to use it on new data.

    Attributes
    ----------
    model:
        The network (any ``nn.Module``; :func:`load_checkpoint` builds a U-Net).
    model_config:
        Its shape.
    class_ids:
        Class id of each output channel; ``class_ids[0] == 0`` is the background.
    class_names:
        ``{class_id: name}``, possibly partial.
    normalization:
        The intensity window the model was trained with.
    step:
        Training steps run.
    kind:
        What the model is for: ``"teacher"``, ``"student"``, ``"quality"``, ...
    train_config:
        How it was trained (None when unknown).
    extra:
        Plain values (numbers, strings, lists, dicts of them) a strategy wants kept.
    """

    model: nn.Module
    model_config: ModelConfig
    class_ids: tuple[int, ...]
    class_names: dict[int, str]
    normalization: Normalization
    step: int = 0
    kind: str = "teacher"
    train_config: TrainConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _check_plain(value: Any, where: str) -> None:
    """Refuse values ``weights_only`` loading could not read back."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str or int")
            _check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif not isinstance(value, _PLAIN):
        raise TypeError(
            f"{where} is a {type(value).__name__}; checkpoints hold only numbers, strings, "
            "lists, dicts and tensors"
        )


def _cpu_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in state.items()}


def checkpoint_dict(
    bundle: ModelBundle,
    optimizer_state: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict :func:`save_checkpoint` writes (tensors moved to the CPU)."""
    checkpoint = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": bundle.kind,
        "model_config": to_dict(bundle.model_config),
        "state_dict": _cpu_state(bundle.model.state_dict()),
        "class_ids": [int(c) for c in bundle.class_ids],
        "class_names": {str(int(k)): str(v) for k, v in bundle.class_names.items()},
        "normalization": bundle.normalization.to_dict(),
        "step": int(bundle.step),
        "optimizer_state": optimizer_state,
        "train_config": None if bundle.train_config is None else to_dict(bundle.train_config),
        "extra": dict(bundle.extra),
    }
    if resume is not None:
        checkpoint["resume"] = resume
    _check_plain(checkpoint, "the checkpoint")
    return checkpoint


def save_checkpoint(
    path: str | os.PathLike[str],
    bundle: ModelBundle,
    optimizer_state: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
) -> Path:
    """Write ``bundle`` to ``path`` atomically and return the path.

    The data goes to a temporary file in the same directory, is flushed to disk, then
    replaces ``path`` in one step: readers see the old file or the new one, never half of one,
    and a failure leaves the old file intact and no temporary file behind.

    Parameters
    ----------
    path:
        Target file (``.pt`` by convention); its directory must exist.
    bundle:
        The model and its metadata.
    optimizer_state:
        ``optimizer.state_dict()`` for resuming training.
    resume:
        Further plain values / tensors a trainer needs to resume (stored under ``"resume"``).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save {path}: the folder {path.parent} does not exist")
    checkpoint = checkpoint_dict(bundle, optimizer_state, resume)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed explicitly below
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
    )
    temp_path = Path(handle.name)
    saved = False
    try:
        with handle:
            torch.save(checkpoint, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_path, path)
        saved = True
    finally:
        if not saved:
            with contextlib.suppress(OSError):
                temp_path.unlink()
    _fsync_directory(path.parent)
    logger.info("saved %s checkpoint (step %d) to %s", bundle.kind, bundle.step, path)
    return path


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); not possible, and not needed, on Windows."""
    if os.name != "posix":
        return
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        logger.debug("could not fsync directory %s", directory)
    finally:
        os.close(descriptor)


def _unreadable(path: Path, error: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file): "
        f"{type(error).__name__}: {error}"
    )


def read_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict:
    """The raw checkpoint dict of ``path``, validated, with tensors on ``device``.

    Raises
    ------
    CheckpointError
        The file is missing, corrupt, unsafe (would run code) or not a napari-distill checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (or is not a file)")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's safe unpickler cannot tell random bytes from a pickle of code: say both.
        raise CheckpointError(
            f"{path} is not a napari-distill checkpoint: the safe loader refused it (it is "
            "corrupt, or it holds Python objects other than weights and plain values, which "
            f"could run code when opened, so it is not loaded). Details: {error}"
        ) from error
    except Exception as error:  # a foreign file can fail anywhere inside the unpickler
        raise _unreadable(path, error) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a torch file but not a napari-distill checkpoint (a bare state_dict or "
            "another tool's checkpoint?); train or export the model with napari-distill"
        )
    version = checkpoint.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}; this napari-distill reads "
            f"versions up to {FORMAT_VERSION}: update napari-distill"
        )
    missing = [
        key
        for key in ("kind", "model_config", "state_dict", "class_ids", "normalization")
        if key not in checkpoint
    ]
    if missing:
        raise CheckpointError(f"{path} is an incomplete checkpoint: missing {missing}")
    return checkpoint


def _class_names(raw: Any, class_ids: tuple[int, ...]) -> dict[int, str]:
    if isinstance(raw, Mapping):
        return {int(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list | tuple):  # names in the order of class_ids
        return {class_id: str(name) for class_id, name in zip(class_ids, raw, strict=False)}
    return {}


def load_checkpoint(
    path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    kind: str | None = None,
) -> tuple[ModelBundle, dict[str, Any]]:
    """Load a checkpoint safely (``weights_only``) and rebuild its model.

    Parameters
    ----------
    path:
        The checkpoint file.
    device:
        Where the model and tensors go.
    kind:
        If given, the checkpoint must be of this kind (e.g. ``"teacher"``).

    Returns
    -------
    bundle, checkpoint
        The model (in eval mode) with its metadata, and the raw checkpoint dict (for
        ``optimizer_state``, ``resume`` and other keys).

    Raises
    ------
    CheckpointError
        Missing, corrupt, foreign, unsafe or mismatched file; the message names it.
    """
    path = Path(path)
    checkpoint = read_checkpoint(path, device)
    if kind is not None and checkpoint["kind"] != kind:
        raise CheckpointError(
            f"{path} holds a {checkpoint['kind']!r} model, but a {kind!r} model is needed here"
        )
    try:
        # Checkpoints from before deep supervision have no auxiliary heads.
        model_config = from_dict(
            ModelConfig, {"deep_supervision": False, **checkpoint["model_config"]}
        )
        model = build_model(model_config)
        model.load_state_dict(checkpoint["state_dict"])
        class_ids = tuple(int(c) for c in checkpoint["class_ids"])
        normalization = Normalization.from_dict(checkpoint["normalization"])
        raw_train = checkpoint.get("train_config")
        train_config = None if raw_train is None else from_dict(TrainConfig, raw_train)
    except (RuntimeError, ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"{path} does not describe a usable model: {error}") from error
    if len(class_ids) != model_config.num_classes:
        raise CheckpointError(
            f"{path} lists {len(class_ids)} classes but its model has "
            f"{model_config.num_classes} outputs"
        )
    model.to(device).eval()
    bundle = ModelBundle(
        model=model,
        model_config=model_config,
        class_ids=class_ids,
        class_names=_class_names(checkpoint.get("class_names"), class_ids),
        normalization=normalization,
        step=int(checkpoint.get("step", 0)),
        kind=str(checkpoint["kind"]),
        train_config=train_config,
        extra=dict(checkpoint.get("extra") or {}),
    )
    return bundle, checkpoint
