"""Does a student taught on many unannotated Pap smear fields beat its teacher? Issue 26.

    .venv/bin/python benchmarks/many_fields.py --json benchmarks/results/many_fields.json

The Pap smear version of ``many_volumes.py`` ("a few annotated fields, many unannotated,
separate test fields"). Every project image is a stack of ``--fields`` synthetic Pap smear
fields (``core.samples.make_pap_smear``, RGB bright-field; each seed a different smear, each
field its own staining, background and focus). For every ``k`` (``--ks``) and seed
(``--seeds``): one stack whose first ``k`` fields are painted (cytoplasm and nucleus, the
sample's semantic truth), ``--unannotated`` stacks without labels, and ``--test`` stacks that
no model sees. Score: mIoU over cytoplasm and nucleus (points, background left out) on every
field of a test stack, averaged over the test stacks, of the six methods of
``many_images.py``; the ``3k`` reference paints the first ``3k`` fields of the same stack.

Every setting is the product's default but the fixed step budget (``--steps``, early stopping
off) and label propagation (off: the fields are separate images, nothing propagates between
them). Results are written after every method (``--json``).
"""

from __future__ import annotations

import argparse

import numpy as np

from many_images import Specimen, Specimens, add_arguments, run_benchmark
from napari_distill.core.samples import make_pap_smear


def painted(truth: np.ndarray, n: int) -> np.ndarray:
    """``truth`` on the first ``n`` fields, zero (unpainted) elsewhere."""
    labels = np.zeros_like(truth)
    labels[:n] = truth[:n]
    return labels


def make_stacks(k: int, seed: int, args: argparse.Namespace) -> Specimens:
    """Smear seeds: ``1000 * seed`` (painted), ``+ 1 ...`` (unannotated), ``+ 500 ...`` (test).

    The test stacks do not depend on ``--unannotated``; the painted stack is the same at every k.
    """
    if 3 * k > args.fields:
        raise ValueError(f"k = {k} needs --fields of at least 3k = {3 * k} for the 3k teacher")
    shape = (args.size, args.size)

    def smear(offset: int) -> Specimen:
        sample = make_pap_smear(args.fields, shape, seed=1000 * seed + offset, n_annotated=0)
        return Specimen(sample.image, sample.semantic_full)

    first = make_pap_smear(args.fields, shape, seed=1000 * seed, n_annotated=0)
    return Specimens(
        painted=first.image,
        painted_labels=painted(first.semantic_full, k),
        painted_labels_3k=painted(first.semantic_full, 3 * k),
        scale=(1.0, *first.scale),  # fields are stacked along the first axis, no physical step
        unannotated=[smear(1 + i) for i in range(args.unannotated)],
        test=[smear(500 + i) for i in range(args.test)],
        rgb=True,
        prefix="smear",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, ks=[3, 6], unannotated=8, test=4)
    parser.add_argument("--fields", type=int, default=18, help="fields in each stack")
    parser.add_argument("--size", type=int, default=512, help="each field's side in pixels")
    args = parser.parse_args(argv)
    return run_benchmark(args, parser, make_stacks, {"fields": args.fields, "size": args.size})


if __name__ == "__main__":
    raise SystemExit(main())
