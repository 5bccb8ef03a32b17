"""Flow propagation's leave-one-painted-slice-out against its true score, slice by slice
(no training): is a held-out slice's score low because of where it lies, because one slice
is scored instead of many, or because of the classes it holds? (issue 25)

    PYTHONPATH=src .venv/bin/python benchmarks/leave_out_flow.py --settings 0:4,1:4,0:1,1:1 \\
        --k 6 --json benchmarks/results/leave_out_flow.json

Per setting ``seed:spacing`` (``teacher_vs_propagation.make_case``: the Medaka sample
re-sliced along its long axis, k painted slices), TV-L1 propagation of all the paint scored
on the unpainted slices between the first and last painted slice that show an organ, pooled
(``pooled_inside``: one confusion matrix, as the benchmarks' truth) and slice by slice
(``per_slice_inside_mean``; ``..._painted_classes``: each slice's mIoU over the organs it
holds only); and each painted slice erased in turn and propagated from the others
(``loo_each``, ``loo_each_painted_classes``): what the comparison scores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_distill.core.device import set_cpu_threads
from napari_distill.core.evaluation.metrics import evaluate_semantic
from napari_distill.core.inference import NeighbourFlows, propagate
from napari_distill.core.progress import run_to_completion
from propagation import _commit
from teacher_vs_propagation import FLOW, make_case


def _miou(truth: np.ndarray, organs: list[int], labels: np.ndarray, slices: list[int],
          painted_classes: bool = False) -> float:  # fmt: skip
    scores = evaluate_semantic(labels, truth, class_ids=[0, *organs], slices=slices)
    if not painted_classes:
        return scores["mean_iou"]
    present = set(np.unique(truth[slices]).tolist()) - {0}
    values = [scores["iou"][c] for c in organs if c in present]
    return float(np.mean(values)) if values else float("nan")


def setting(seed: int, spacing: int, k: int) -> dict:
    """One setting's pooled, per-slice and leave-one-out scores of flow propagation."""
    case = make_case(seed, 1, spacing, k, 1)
    sample, painted = case.sample, case.painted
    truth, organs = sample.labels_full, sorted(sample.class_names)
    flows = NeighbourFlows(sample.image, FLOW)
    full = run_to_completion(
        propagate(sample.image, sample.labels_sparse, FLOW, flows=flows, keep_probabilities=False)
    )
    labels = np.array(full.labels)
    first, last = min(painted), max(painted)
    inside = [i for i in case.unpainted if first < i < last and truth[i].any()]
    out = {
        "seed": seed, "spacing": spacing, "k": k, "painted": painted,
        "pooled_inside": _miou(truth, organs, labels, inside),
        "per_slice_inside_mean": float(np.nanmean([_miou(truth, organs, labels, [i])
                                                   for i in inside])),
        "per_slice_inside_mean_painted_classes": float(np.nanmean(
            [_miou(truth, organs, labels, [i], True) for i in inside])),
        "loo_each": {}, "loo_each_painted_classes": {},
    }  # fmt: skip
    for index in painted:
        others = np.array(sample.labels_sparse)
        others[index] = 0
        held = run_to_completion(
            propagate(sample.image, others, FLOW, slices=[index], flows=flows,
                      keep_probabilities=False)
        )  # fmt: skip
        held_labels = np.array(held.labels)
        out["loo_each"][str(index)] = _miou(truth, organs, held_labels, [index])
        out["loo_each_painted_classes"][str(index)] = _miou(
            truth, organs, held_labels, [index], True
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", default="0:4,1:4", help="seed:spacing, comma separated")
    parser.add_argument("--k", type=int, default=6, help="painted slices")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    set_cpu_threads(args.threads)
    runs = []
    for item in args.settings.split(","):
        seed, spacing = (int(v) for v in item.split(":"))
        runs.append(setting(seed, spacing, args.k))
        print(json.dumps(runs[-1], default=float), file=sys.stderr, flush=True)
    payload = {"benchmark": "leave_out_flow", "commit": _commit(), "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(json.dumps(payload, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
