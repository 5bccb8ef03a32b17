"""Does a student taught on many unannotated fish beat its teacher? Issue 26's benchmark.

    .venv/bin/python benchmarks/many_volumes.py --json benchmarks/results/many_volumes.json

Synthetic Medaka fish (``core.samples.make_medaka``), each seed a different fish (anatomy,
pose, texture and noise). For every number of painted slices ``k`` (``--ks``) and seed
(``--seeds``): one fish with ``k`` painted slices (spread over the organs, as the sample
paints them), ``--unannotated`` fish without labels, and ``--test`` fish that no model sees.
Score: mIoU over the nine organs (points, background left out) on every slice of a test fish,
averaged over the test fish, of the six methods of ``many_images.py`` (the teacher, matched
compute, naive self-training, the product's filtered KD student, KD without the filter, and a
teacher on ``3k`` painted slices of the same fish).

The project run is the product's (``run_project_pipeline``): its teacher, quality classifier,
per-image pseudo-labels and selection feed the other students, which are built on the same
stack of memory maps (``build_project_stack``) with the same strategy code. Every training has
a fixed step budget (``--steps``; early stopping off). Also recorded: how good the accepted and
all pseudo-labels of the unannotated fish are (mIoU against their truth).

Results are written after every method (``--json``), so an interrupted run keeps them.
"""

from __future__ import annotations

import argparse

from many_images import Specimen, Specimens, add_arguments, run_benchmark
from napari_distill.core.samples import make_medaka
from napari_distill.core.samples.medaka import REFERENCE_SHAPE


def make_fish(k: int, seed: int, args: argparse.Namespace) -> Specimens:
    """Fish seeds: ``1000 * seed`` (painted), ``+ 1 ...`` (unannotated), ``+ 500 ...`` (test).

    The test fish do not depend on ``--unannotated``; the painted fish is the same at every k.
    """
    shape = tuple(args.shape)
    painted = make_medaka(shape, n_annotated=k, seed=1000 * seed)
    painted_3k = make_medaka(shape, n_annotated=3 * k, seed=1000 * seed).labels_sparse
    unannotated = [
        make_medaka(shape, n_annotated=0, seed=1000 * seed + 1 + i) for i in range(args.unannotated)
    ]
    test = [make_medaka(shape, n_annotated=0, seed=1000 * seed + 500 + i) for i in range(args.test)]
    return Specimens(
        painted=painted.image,
        painted_labels=painted.labels_sparse,
        painted_labels_3k=painted_3k,
        scale=painted.scale,
        unannotated=[Specimen(s.image, s.labels_full) for s in unannotated],
        test=[Specimen(s.image, s.labels_full) for s in test],
        prefix="fish",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser, ks=[3, 6], unannotated=8, test=4)
    parser.add_argument(
        "--shape", type=int, nargs=3, default=list(REFERENCE_SHAPE), help="each fish's Z Y X"
    )
    args = parser.parse_args(argv)
    return run_benchmark(args, parser, make_fish, {"shape": args.shape})


if __name__ == "__main__":
    raise SystemExit(main())
