"""The ``export-model`` command: a teacher or student as a bioimage.io model package."""

from __future__ import annotations

import argparse
import logging

from napari_distill.cli._base import UserError, check_output, command, load_image

log = logging.getLogger("napari_distill")


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="a teacher or student checkpoint (.pt)")
    p.add_argument("--out", required=True, help="the bioimage.io model package to write (.zip)")
    p.add_argument(
        "--image",
        help="the package's test input comes from this image's middle slice (default: the "
        "bundled synthetic sample with the model's colours)",
    )
    p.add_argument("--name", help="the model's name (default: napari-distill teacher/student)")
    p.add_argument(
        "--author", action="append", help="an author's name (repeat for several)", dest="authors"
    )


@command(
    "export-model",
    "Write a teacher or student as a bioimage.io model package (TorchScript, validated).",
    add_arguments=_export_arguments,
    uses_device=False,
)
def export_command(args: argparse.Namespace) -> None:
    from napari_distill.cli.predict import load_model
    from napari_distill.core.export import ExportError, check_exportable, export_bioimageio

    out = check_output(args.out, args.overwrite, (".zip",))
    bundle = load_model(args.model)
    try:
        check_exportable(bundle)
        image = load_image(args.image)[0] if args.image else None
        export_bioimageio(
            bundle,
            out,
            image=None if image is None else image.data,
            rgb=bool(image is not None and image.rgb),
            name=args.name,
            authors=args.authors,
            overwrite=args.overwrite,
        )
    except ExportError as exc:
        raise UserError(str(exc)) from exc
    log.info("wrote %s", out)
