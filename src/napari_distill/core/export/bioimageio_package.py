"""A teacher or student checkpoint as a bioimage.io model package (model format 0.5).

What goes in the zip:

- **weights**: TorchScript of :class:`ProbabilityModule`, the network (one U-Net, or an
  ensemble: the mean of its members' softmax) followed by a softmax, traced on the test input.
  Traced, not scripted (the U-Net's config is a Python dataclass TorchScript cannot hold): the
  trace is valid for every input whose height and width are multiples of the network's size
  multiple, which is what the input axes allow (``min`` = ``step`` = that multiple).
- **input** ``raw``: ``(batch, channel, y, x)`` float32 raw intensities; the channels are the
  slice and its ``context_slices`` neighbours on each side, slice-major, each with the image's
  colours (``z-1``, ``z``, ``z+1`` for a grey 2.5D model).
- **preprocessing**: the checkpoint's :class:`~napari_distill.core.preprocess.Normalization`,
  ``(x - low) * (1 / (high - low))`` per colour, then clipped to [0, 1] when it clips, as
  bioimage.io ops: ``scale_linear`` (offset ``-low``), ``ensure_dtype`` float32,
  ``scale_linear`` (gain), ``ensure_dtype`` float32[, ``clip``]. Two steps with a float32
  rounding after each give the same numbers as napari-distill's float32 arithmetic.
- **output** ``probabilities``: ``(batch, channel, y, x)``, a channel per class (named by the
  class names); labels are ``class_ids[argmax]``, written in the README and in
  ``config.napari_distill.class_ids``.
- a test input (a slice of the user's image, or of the bundled sample) and its output, a
  README, and the citation of the method (Bhatt et al., ISBI 2023).

A teacher with views (members along the volume's three axes) is refused: a bioimage.io model
maps one slice to its labels, which such a teacher cannot do alone.
"""

from __future__ import annotations

import logging
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models import ModelBundle
from ..preprocess import context_indices

logger = logging.getLogger(__name__)

METHOD_URL = "https://arxiv.org/abs/2302.12562"
METHOD_CITATION = (
    "Bhatt, Zharov, Suh, Baumbach, Heuveline, Lukowicz. Self-training with quality "
    "classifier and pixel-wise knowledge distillation for few-annotation segmentation of "
    "micro-CT. ISBI 2023, arXiv:2302.12562"
)
#: Largest side of the test input, in pixels (the package stays small).
TEST_SIZE = 128


class ExportError(ValueError):
    """A checkpoint that cannot become a bioimage.io model, or a missing optional package."""


class ProbabilityModule(nn.Module):
    """The network's class probabilities ``(B, K, H, W)`` for a normalised input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # an ensemble's forward is the log of its members' mean softmax: softmax gives it back
        return torch.softmax(self.model(x), dim=1)


def _require_spec() -> Any:
    try:
        import bioimageio.spec as spec
    except ImportError as exc:
        raise ExportError(
            "exporting to bioimage.io needs bioimageio.spec: pip install 'napari-distill[export]'"
        ) from exc
    return spec


def check_exportable(bundle: ModelBundle) -> None:
    """Raise :class:`ExportError` unless ``bundle`` is a teacher or student of one slice."""
    if bundle.kind not in ("teacher", "student"):
        raise ExportError(f"a {bundle.kind} checkpoint is not a segmentation model")
    if bundle.model_config.views:
        raise ExportError(
            "this teacher predicts along the volume's three axes (views); a bioimage.io model "
            "maps one slice to its labels: export a student, or a teacher trained without views"
        )


def _colours(bundle: ModelBundle) -> int:
    return bundle.model_config.in_channels // (2 * bundle.model_config.context_slices + 1)


def test_input(bundle: ModelBundle, image: Any = None, *, rgb: bool = False) -> np.ndarray:
    """The package's test input ``(1, C_in, S, S)`` float32 raw intensities: the middle
    slice of ``image`` (a ``(Z, Y, X[, C])`` stack or a 2D image) with its context, cropped
    at its centre to a multiple of the network's size multiple (at most :data:`TEST_SIZE`).

    Without ``image``, the bundled synthetic sample with the model's colours (the Medaka CT
    for grey, a Pap smear field for RGB).
    """
    colours = _colours(bundle)
    if image is None:
        image, rgb = _sample(colours)
    stack = np.asarray(image) if not hasattr(image, "compute") else image
    stack = stack[None] if stack.ndim - (1 if rgb else 0) == 2 else stack
    if not rgb:
        stack = stack[..., None]
    if stack.shape[-1] != colours:
        raise ExportError(
            f"the model takes {colours} colour channel(s), the image has {stack.shape[-1]}"
        )
    multiple = int(getattr(bundle.model, "size_multiple", 1) or 1)
    side = min(TEST_SIZE, *stack.shape[1:3]) // multiple * multiple
    if side < multiple:
        raise ExportError(f"the image's slices are smaller than {multiple} pixels")
    top = (stack.shape[1] - side) // 2
    left = (stack.shape[2] - side) // 2
    middle = stack.shape[0] // 2
    planes = [
        np.asarray(stack[i, top : top + side, left : left + side], dtype=np.float32)
        for i in context_indices(middle, stack.shape[0], bundle.model_config.context_slices)
    ]
    channels = np.concatenate(planes, axis=-1)  # slice-major, as slice_input orders them
    return np.ascontiguousarray(np.moveaxis(channels, -1, 0))[None]


def _sample(colours: int) -> tuple[np.ndarray, bool]:
    from ..samples import make_medaka, make_pap_smear

    if colours == 1:
        return make_medaka(shape=(16, 128, 96), n_annotated=1, seed=0).image, False
    if colours == 3:
        return make_pap_smear(n_fields=1, field_shape=(TEST_SIZE, TEST_SIZE)).image[0], True
    raise ExportError(f"no bundled sample has {colours} colour channels: give an image")


def _gains_offsets(bundle: ModelBundle) -> tuple[list[float], list[float]]:
    """Per input channel: ``-low`` and ``1 / (high - low)`` as napari-distill computes them
    in float32 (:meth:`Normalization.apply`), repeated for each context slice."""
    low = np.asarray(bundle.normalization.low, dtype=np.float32)
    gain = np.float32(1.0) / (np.asarray(bundle.normalization.high, dtype=np.float32) - low)
    repeat = 2 * bundle.model_config.context_slices + 1
    return [float(g) for g in np.tile(gain, repeat)], [float(-v) for v in np.tile(low, repeat)]


def normalise(bundle: ModelBundle, raw: np.ndarray) -> np.ndarray:
    """``raw`` ``(1, C_in, H, W)`` as the package's preprocessing leaves it."""
    gains, offsets = _gains_offsets(bundle)
    shape = (1, -1, 1, 1)
    out = (raw.astype(np.float32) + np.asarray(offsets, np.float32).reshape(shape)).astype(
        np.float32
    )
    out = (out * np.asarray(gains, np.float32).reshape(shape)).astype(np.float32)
    return np.clip(out, 0.0, 1.0) if bundle.normalization.clip else out


def preprocessing_steps(bundle: ModelBundle) -> list[Any]:
    """The checkpoint's normalisation as bioimage.io 0.5 preprocessing descriptions."""
    _require_spec()
    from bioimageio.spec.model import v0_5 as spec

    gains, offsets = _gains_offsets(bundle)
    float32 = spec.EnsureDtypeDescr(kwargs=spec.EnsureDtypeKwargs(dtype="float32"))
    steps: list[Any] = [float32]
    if any(offsets):
        kwargs = spec.ScaleLinearAlongAxisKwargs(axis=spec.AxisId("channel"), offset=offsets)
        steps += [spec.ScaleLinearDescr(kwargs=kwargs), float32]
    if any(g != 1.0 for g in gains):
        kwargs = spec.ScaleLinearAlongAxisKwargs(axis=spec.AxisId("channel"), gain=gains)
        steps += [spec.ScaleLinearDescr(kwargs=kwargs), float32]
    if bundle.normalization.clip:
        steps.append(spec.ClipDescr(kwargs=spec.ClipKwargs(min=0.0, max=1.0)))
    return steps


def channel_names(bundle: ModelBundle) -> list[str]:
    """Input channel names: ``z_m1``, ``z``, ``z_p1`` (the slice before, the slice, the slice
    after) for grey, ``z_r``, ``z_g``, ``z_b``... for RGB."""
    colours = ["r", "g", "b", "a"][: _colours(bundle)] if _colours(bundle) > 1 else [""]
    context = bundle.model_config.context_slices
    names = []
    for offset in range(-context, context + 1):
        slice_name = "z" if offset == 0 else f"z_{'m' if offset < 0 else 'p'}{abs(offset)}"
        names += [f"{slice_name}_{c}" if c else slice_name for c in colours]
    return names


def class_names(bundle: ModelBundle) -> list[str]:
    """Output channel names: the class names (lower case, no spaces), else ``class<id>``."""
    names = []
    for class_id in bundle.class_ids:
        name = bundle.class_names.get(class_id) or ("background" if class_id == 0 else "")
        name = re.sub(r"\W+", "_", str(name).lower()).strip("_")
        name = name if name and not name[0].isdigit() else f"class{class_id}"
        names.append(name if name not in names else f"{name}{class_id}")
    return names


def trace(bundle: ModelBundle, example: np.ndarray) -> torch.jit.ScriptModule:
    """TorchScript of :class:`ProbabilityModule` traced on a normalised ``example``."""
    module = ProbabilityModule(bundle.model).eval().cpu()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        # the U-Net's shape checks become constants of the trace: right for every size the
        # input axes allow (multiples of the size multiple), which is why they say so
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module, torch.from_numpy(example), check_trace=False)


def export_bioimageio(
    bundle: ModelBundle,
    out: str | Path,
    *,
    image: Any = None,
    rgb: bool = False,
    name: str | None = None,
    authors: list[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``bundle`` as a bioimage.io model package (a ``.zip``); return its path.

    ``image`` gives the test input (default: the bundled sample, see :func:`test_input`).
    The package is checked by bioimageio.spec's validator as it is written (no download:
    its file checks are local). Needs the optional dependency bioimageio.spec.

    Raises
    ------
    ExportError
        A views teacher, a quality model, a missing bioimageio.spec, or an invalid package.
    FileExistsError
        ``out`` exists and ``overwrite`` is False.
    """
    from ..io import check_output_path
    from .description import build_description

    _require_spec()
    check_exportable(bundle)
    target = check_output_path(out, overwrite, (".zip",))
    raw = test_input(bundle, image, rgb=rgb)
    normalised = normalise(bundle, raw)
    scripted = trace(bundle, normalised)
    with torch.no_grad():
        probabilities = scripted(torch.from_numpy(normalised)).numpy()
    with tempfile.TemporaryDirectory(prefix="napari-distill-export-") as folder:
        work = Path(folder)
        np.save(work / "test_input.npy", raw)
        np.save(work / "test_output.npy", probabilities)
        scripted.save(str(work / "weights.pt"))
        description = build_description(
            bundle, work, raw, name=name or f"napari-distill {bundle.kind}", authors=authors
        )
        return _save(description, target, overwrite)


def _save(description: Any, target: Path, overwrite: bool) -> Path:
    """Validate and write the package via a temporary file renamed into place."""
    import os
    import secrets

    from bioimageio.spec import save_bioimageio_package

    temporary = target.with_name(f".{target.stem}.{secrets.token_hex(4)}.zip")
    try:
        save_bioimageio_package(description, output_path=temporary)
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} appeared while writing; nothing was replaced")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("wrote the bioimage.io model %s", target)
    return target
