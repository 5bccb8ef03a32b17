"""Does ``mixed`` beat full masks alone and full masks + scribbles with partial CE only?

    .venv/bin/python benchmarks/weak_labels.py --json benchmarks/results/weak_labels.json

Per sample (Medaka, Pap smear; reduced, see ``weak_common``) and seed: two slices (fields)
get full masks, four others weak labels only, the rest are the test slices. Weak labels are
``simulate_scribbles`` (a 20-pixel stroke per structure and through the background) or, as a
separate condition, ``simulate_points`` (one click per structure, disks of radius 3). Arms,
each with the same step budget, from scratch:

- ``full_only``: one network trained on the full masks (the teacher's ordinary training);
- ``partial_ce``: the ``mixed`` network with ``lambda_kl = lambda_h = 0`` (the student branch
  learns full masks + scribbles by partial cross-entropy alone);
- ``mixed``: the defaults (``lambda_kl = 1``, ``lambda_h = 0.1``), student branch;
- ``mixed_points`` / ``partial_ce_points``: the same with points instead of scribbles.

Nothing here was tuned on these samples: every setting is the strategy's default.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np
import torch

from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import simulate_points, simulate_scribbles
from napari_distill.core.strategies import MixedConfig, get_strategy
from napari_distill.core.training import train_teacher
from weak_common import MODEL, score, summary, train_config, volume, write_json

log = logging.getLogger("weak_labels")
ARMS = ("full_only", "partial_ce", "mixed", "mixed_points", "partial_ce_points")
DEFAULT_ARMS = ARMS[:4]  # partial_ce_points left out by default to save compute
NO_TERMS = MixedConfig(lambda_kl=0.0, lambda_h=0.0, init_from_teacher=False)
DEFAULTS = MixedConfig(init_from_teacher=False)


def split(data, rng: np.random.Generator) -> tuple[list[int], list[int], list[int]]:
    """Two full slices (greedily covering the most classes, in a seeded random order), four
    weak ones and the rest (tests)."""
    order = [int(i) for i in rng.permutation(data.useful)]
    classes = {i: set(np.unique(data.truth[i]).tolist()) - {0} for i in order}
    first = max(order, key=lambda i: len(classes[i]))
    second = max((i for i in order if i != first), key=lambda i: len(classes[i] - classes[first]))
    rest = [i for i in order if i not in (first, second)]
    return sorted([first, second]), sorted(rest[:4]), sorted(rest[4:])


def known_only(weak, truth_full):
    """Weak labels of the classes the full masks have (a user paints every class fully once;
    with two slices of a sample some organs are absent, and are then scored by no arm)."""
    keep = np.isin(weak, [0, 255, *np.unique(truth_full)])
    return np.where(keep, weak, 0)


def run_arm(arm: str, data, full_slices, weak_slices, seed: int, steps: int) -> object:
    labels = np.zeros_like(data.truth)
    labels[full_slices] = data.truth[full_slices]
    config = train_config(steps, seed)
    torch.manual_seed(seed)
    teacher = train_teacher(
        data.image, labels, model_config=MODEL, train_config=config if arm == "full_only"
        else train_config(1, seed), device="cpu", rgb=data.rgb,
    )  # fmt: skip
    run_to_completion(teacher.steps())
    reference = teacher.best_bundle()
    if arm == "full_only":
        return reference
    points = arm.endswith("_points")
    known = np.unique(labels[full_slices])
    if points:
        rows = simulate_points(data.truth, weak_slices, 1, seed=seed)
        options = {"points": rows[np.isin(rows[:, 3], known)]}
    else:
        scribbles = simulate_scribbles(data.truth, weak_slices, 20, seed=seed)
        options = {"weak_labels": known_only(scribbles, labels[full_slices])}
    strategy = NO_TERMS if arm.startswith("partial_ce") else DEFAULTS
    run = get_strategy("mixed").build(
        reference, data.image, labels, [], train_config=config, strategy_config=strategy,
        device="cpu", rgb=data.rgb, **options,
    )  # fmt: skip
    run_to_completion(run.steps())
    return run.best_bundle()


def report(rows: list[dict], args, started: float) -> str:
    results = {
        f"{name}/{arm}": summary(chosen)
        for name in args.samples
        for arm in args.arms
        if (chosen := [r["dice"] for r in rows if (r["sample"], r["arm"]) == (name, arm)])
    }
    out = {
        "benchmark": "weak_labels",
        "settings": {**vars(args), "full_slices": 2, "weak_slices": 4, "scribble_length": 20,
                     "points_per_structure": 1, "point_radius": DEFAULTS.point_radius},
        "summary": results,
        "runs": rows,
        "seconds": round(time.perf_counter() - started, 1),
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    return json.dumps(out, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here (else print them)")
    parser.add_argument("--samples", nargs="+", default=["medaka", "pap"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=150, help="steps of every arm")
    parser.add_argument("--arms", nargs="+", default=list(DEFAULT_ARMS), choices=ARMS)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    log.setLevel(logging.INFO)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    rows = []
    for name in args.samples:
        for seed in args.seeds:
            data = volume(name, seed)
            full_slices, weak_slices, test = split(data, np.random.default_rng(seed))
            classes = [int(c) for c in np.unique(data.truth[full_slices])]
            for arm in args.arms:
                t0 = time.perf_counter()
                bundle = run_arm(arm, data, full_slices, weak_slices, seed, args.steps)
                dice = score(bundle, data, test, classes)
                rows.append({"sample": name, "seed": seed, "arm": arm, "dice": round(dice, 2),
                             "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
                log.info("%s", rows[-1])
                if args.json:
                    write_json(args.json, report(rows, args, started))
    text = report(rows, args, started)
    if args.json:
        write_json(args.json, text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
