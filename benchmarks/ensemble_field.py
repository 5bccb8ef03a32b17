"""What did predicting a trained ensemble with 1 pixel of context cost? (fixed in a4e8b36)

    cd benchmarks && PYTHONPATH=../src:. python ensemble_field.py --json results/ensemble_field.json

Until a4e8b36 a trained ensemble's receptive field was probed through the log of its members'
mean softmax; once trained that softmax saturates, the probe's gradient vanished and the field
came out as 1 pixel, so every prediction was cropped to the tissue with no context around it
(the members alone measured 93 pixels). Per seed and kind of teacher (``ensemble3``: three
networks along the slices; ``views3``: one along each axis), one training on every third slice
that shows organs of the reduced Medaka sample (``weak_common``), then mean foreground Dice on
the other slices: as predicted now; with the field the old probe measures on this very model
(``old_probe_field``: the probe through the mean softmax, which is 1 only once the softmax
saturates at the probe's pixel); and with the 1-pixel field forced on the model
(``receptive_field = 1``: the cost where the probe did return 1, an upper bound otherwise).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from napari_distill.core.config import ModelConfig
from napari_distill.core.inference.tiling import _measure_receptive_field
from napari_distill.core.models import ensemble_members
from napari_distill.core.progress import run_to_completion
from napari_distill.core.training import train_teacher
from weak_common import score, summary, train_config, volume, write_json

TEACHERS = {
    "ensemble3": ModelConfig(members=3),
    "views3": ModelConfig(members=3, views=True),
}


def measure(kind: str, seed: int, steps: int) -> dict:
    data = volume("medaka", seed)
    train = data.useful[::3]
    test = [i for i in data.useful if i not in train]
    labels = np.zeros_like(data.truth)
    labels[train] = data.truth[train]
    torch.manual_seed(seed)
    run = train_teacher(
        data.image, labels, model_config=TEACHERS[kind], train_config=train_config(steps, seed),
        device="cpu",
    )  # fmt: skip
    run_to_completion(run.steps())
    bundle = run.best_bundle()
    now = score(bundle, data, test)
    # the old probe, through the ensemble's mean softmax (views: each axis's group alone)
    old_field = _measure_receptive_field(bundle.model, bundle.model_config.in_channels, 1024)
    for module in (bundle.model, *ensemble_members(bundle.model)):
        module.receptive_field = 1  # what the probe returned for a saturated ensemble
    before = score(bundle, data, test)
    return {
        "kind": kind, "seed": seed, "now": round(now, 2), "old_probe_field": old_field,
        "field_1px": round(before, 2),
    }  # fmt: skip


def gains(runs: list[dict], kinds: list[str]) -> dict:
    """Per kind: what the fix gained where the old probe measured 1 pixel (0 elsewhere), and
    what it would have gained had it measured 1 pixel everywhere (the upper bound)."""

    def lost(run: dict) -> float:
        return run["now"] - run["field_1px"] if run["old_probe_field"] == 1 else 0.0

    return {
        "gain_over_old_probe": {
            kind: summary([lost(r) for r in runs if r["kind"] == kind]) for kind in kinds
        },
        "gain_over_1px_everywhere": {
            kind: summary([r["now"] - r["field_1px"] for r in runs if r["kind"] == kind])
            for kind in kinds
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here (else print them)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--kinds", nargs="+", default=list(TEACHERS), choices=list(TEACHERS))
    parser.add_argument("--steps", type=int, default=300, help="steps of every teacher")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    runs = []
    for seed in args.seeds:
        for kind in args.kinds:
            runs.append(measure(kind, seed, args.steps))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    text = json.dumps({"settings": vars(args), **gains(runs, args.kinds), "runs": runs}, indent=1)
    if args.json:
        write_json(args.json, text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
