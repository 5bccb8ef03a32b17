"""The bioimage.io model description (``rdf.yaml``) of an exported checkpoint, and its README.

Built with bioimageio.spec's own classes (model format 0.5), so a field it would refuse fails
here, before anything is written. Only :mod:`.bioimageio_package` calls this, after it has
checked that bioimageio.spec is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..models import ModelBundle
from .bioimageio_package import (
    METHOD_CITATION,
    METHOD_URL,
    channel_names,
    class_names,
    preprocessing_steps,
)

_README = """# {name}

A {kind} exported from [napari-distill](https://github.com/napari-distill/napari-distill):
a 2D U-Net{ensemble} that segments one slice of a stack (micro-CT, or a Pap smear field) into
{classes} classes, trained from a few painted slices ({steps} training steps).

## Input
`raw`: `(batch, channel, y, x)` float32 raw intensities, y and x multiples of {multiple}.
The channels are the slice{context}, in this order: {channels}.

The preprocessing is napari-distill's intensity window, stored in the checkpoint:
`(x - low) * (1 / (high - low))` per colour channel{clip}, with
low = {low} and high = {high}.

## Output
`probabilities`: `(batch, channel, y, x)`, one channel per class ({outputs}). The labels are
`class_ids[argmax over channel]` with class_ids = {class_ids}.

napari-distill itself predicts larger slices in tiles blended with a Gaussian window and
skips tiles without tissue; `napari-distill predict --no-crop` on the test input gives the
labels of this model (tested).

## Method
Teacher-student knowledge distillation from few annotated slices: {citation}.
"""


def readme(bundle: ModelBundle, name: str) -> str:
    config = bundle.model_config
    context = config.context_slices
    members = config.members
    norm = bundle.normalization
    return _README.format(
        name=name,
        kind=bundle.kind,
        ensemble=f" ensemble of {members} members (the mean of their softmax)"
        if members > 1
        else "",
        classes=len(bundle.class_ids),
        steps=bundle.step,
        multiple=int(getattr(bundle.model, "size_multiple", 1) or 1),
        context=f" and {context} neighbouring slice(s) on each side" if context else "",
        channels=", ".join(channel_names(bundle)),
        clip=", then clipped to [0, 1]" if norm.clip else "",
        low=[round(v, 6) for v in norm.low],
        high=[round(v, 6) for v in norm.high],
        outputs=", ".join(class_names(bundle)),
        class_ids=list(bundle.class_ids),
        citation=METHOD_CITATION,
    )


def build_description(
    bundle: ModelBundle,
    work: Path,
    raw: np.ndarray,
    *,
    name: str,
    authors: list[str] | None = None,
) -> Any:
    """A ``ModelDescr`` whose files (weights.pt, test tensors, README.md) are in ``work``."""
    from bioimageio.spec.model import v0_5 as spec

    (work / "README.md").write_text(readme(bundle, name))
    multiple = int(getattr(bundle.model, "size_multiple", 1) or 1)
    y, x = spec.AxisId("y"), spec.AxisId("x")
    inputs = spec.InputTensorDescr(
        id=spec.TensorId("raw"),
        description="the slice and its context slices, raw intensities",
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=channel_names(bundle)),
            spec.SpaceInputAxis(id=y, size=spec.ParameterizedSize(min=multiple, step=multiple)),
            spec.SpaceInputAxis(id=x, size=spec.ParameterizedSize(min=multiple, step=multiple)),
        ],
        test_tensor=spec.FileDescr(source=work / "test_input.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=preprocessing_steps(bundle),
    )
    outputs = spec.OutputTensorDescr(
        id=spec.TensorId("probabilities"),
        description="class probabilities; labels = class_ids[argmax over channel]",
        axes=[
            spec.BatchAxis(),
            spec.ChannelAxis(channel_names=class_names(bundle)),
            spec.SpaceOutputAxis(id=y, size=spec.SizeReference(tensor_id=inputs.id, axis_id=y)),
            spec.SpaceOutputAxis(id=x, size=spec.SizeReference(tensor_id=inputs.id, axis_id=x)),
        ],
        test_tensor=spec.FileDescr(source=work / "test_output.npy"),
        data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )
    weights = spec.WeightsDescr(
        torchscript=spec.TorchscriptWeightsDescr(
            source=work / "weights.pt",
            pytorch_version=spec.Version(torch.__version__.split("+")[0]),
        )
    )
    return spec.ModelDescr(
        name=name,
        description=(
            f"2D U-Net {bundle.kind} from napari-distill: {len(bundle.class_ids)} classes "
            "from a few painted slices (teacher-student knowledge distillation)"
        ),
        authors=[spec.Author(name=a) for a in (authors or ["napari-distill user"])],
        cite=[spec.CiteEntry(text=METHOD_CITATION, url=spec.HttpUrl(METHOD_URL))],
        license=spec.LicenseId("BSD-3-Clause"),
        documentation=spec.FileDescr(source=work / "README.md"),
        tags=["segmentation", "2d", "unet", "knowledge-distillation", "napari-distill"],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config=spec.Config(
            **{
                "napari_distill": {
                    "class_ids": [int(c) for c in bundle.class_ids],
                    "kind": bundle.kind,
                    "context_slices": bundle.model_config.context_slices,
                    "step": int(bundle.step),
                }
            }
        ),
    )
