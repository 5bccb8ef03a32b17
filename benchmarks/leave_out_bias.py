"""Why does the leave-out comparison misjudge the teacher against propagation? One planned
teacher on one re-sliced fish, each piece of the estimate scored apart (issue 25).

    PYTHONPATH=src .venv/bin/python benchmarks/leave_out_bias.py --spacing 4 --k 6 \\
        --seed 0 --teacher-steps 200 --json benchmarks/results/leave_out_bias.json

The case is ``teacher_vs_propagation.py``'s (``make_case``: the Medaka sample re-sliced along
its long axis every ``--spacing`` slices, ``--k`` painted slices, fish ``--seed``), the
teacher ``train_teacher(plan=plan_for_data(...))`` with ``--teacher-steps`` steps. Against
the full truth, mIoU over the organs:

- ``ensemble``: the teacher (every network) on the unpainted slices, on those between the
  first and last painted slice (``inside``) and outside that range, and on the held-out
  slices (``held``);
- ``members``: each network alone, on the slice(s) it held out and on the unpainted slices
  (how far one network, e.g. one view, is from the teacher);
- ``flow``: TV-L1 propagation of all the paint on the same slice sets; ``flow_held``: flow
  propagation into each held-out set with it erased (what the comparison scores);
  ``flow_each``: each painted slice erased in turn (an end of the painted range against
  interior slices);
- ``comparison``: the product's estimate (``compare_with_propagation`` on the stored splits),
  with the classes painted on the held-out slices and each held-out set's scores over its own
  painted classes (``held_out_scores``, with the axes of the networks that predicted it).

Appends the run to ``--json`` (a list of runs, each with the commit it ran with).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_distill.core.config import PredictConfig, TrainConfig
from napari_distill.core.device import set_cpu_threads
from napari_distill.core.evaluation.metrics import evaluate_semantic
from napari_distill.core.inference import (
    NeighbourFlows,
    compare_with_propagation,
    predict_bundle,
    propagate,
)
from napari_distill.core.inference.comparison import _group_prediction
from napari_distill.core.progress import run_to_completion
from napari_distill.core.training import plan_for_data, stored_splits, train_teacher
from propagation import _commit
from teacher_vs_propagation import FLOW, make_case

log = logging.getLogger("leave_out_bias")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="the fish and the training")
    parser.add_argument("--spacing", type=int, default=4, help="keep every s-th slice")
    parser.add_argument("--k", type=int, default=6, help="painted slices")
    parser.add_argument("--teacher-steps", type=int, default=200, help="the teacher's steps")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", help="append the run to this JSON list")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    set_cpu_threads(args.threads)
    started = time.perf_counter()
    case = make_case(args.seed, 1, args.spacing, args.k, 1)
    sample, painted = case.sample, case.painted
    organs = sorted(sample.class_names)

    def miou(labels: np.ndarray, slices: list[int]) -> float:
        truth = sample.labels_full
        return evaluate_semantic(labels, truth, class_ids=[0, *organs], slices=slices)["mean_iou"]

    first, last = min(painted), max(painted)
    sets = {
        "unpainted": case.unpainted,
        "inside": [i for i in case.unpainted if first < i < last],
        "outside": [i for i in case.unpainted if not first < i < last],
    }
    plan = plan_for_data(
        sample.image, sample.labels_sparse, spacing=sample.scale, device="cpu",
        given={"steps": args.teacher_steps}, class_names=sample.class_names,
    )  # fmt: skip
    run = train_teacher(
        sample.image, sample.labels_sparse, device="cpu", class_names=sample.class_names,
        train_config=TrainConfig(steps=args.teacher_steps, seed=args.seed), plan=plan,
    )  # fmt: skip
    run_to_completion(run.steps())
    bundle = run.best_bundle()
    splits = stored_splits(bundle)
    ids = np.asarray(bundle.class_ids)
    flows = NeighbourFlows(sample.image, FLOW)
    out: dict[str, Any] = {
        "commit": _commit(), "seed": args.seed, "spacing": args.spacing, "k": args.k,
        "teacher_steps": args.teacher_steps, "painted": painted,
        "splits": [[list(t), list(v)] for t, v in splits],
        "members_axes": [bundle.model_config.member_axis(m) for m in range(len(splits))],
    }  # fmt: skip
    comparison = run_to_completion(
        compare_with_propagation(
            bundle, sample.image, sample.labels_sparse, splits, FLOW, device="cpu", flows=flows
        )
    )
    held = sorted({i for group in comparison.held_out for i in group})
    out["comparison"] = {
        "held_out": [list(g) for g in comparison.held_out],
        "loo_teacher": comparison.teacher_miou, "loo_flow": comparison.propagation_miou,
        "classes": comparison.rows(), "scored_class_ids": list(comparison.scored_class_ids),
        "held_out_scores": [dict(s) for s in comparison.held_out_scores],
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lob-", ignore_cleanup_errors=True) as work:
        prediction = run_to_completion(
            predict_bundle(bundle, sample.image, config=PredictConfig(), device="cpu",
                           out_dir=work)
        )  # fmt: skip
        teacher = np.array(prediction.labels)
    out["ensemble"] = {name: miou(teacher, s) for name, s in sets.items()}
    out["ensemble"]["held"] = miou(teacher, held) if held else None
    every = list(range(sample.image.shape[0]))
    out["members"] = []
    for member, (training, validation) in enumerate(splits):
        alone = run_to_completion(
            _group_prediction(bundle, [member], sample.image, every, config=PredictConfig(),
                              device="cpu")
        )  # fmt: skip
        labels = ids[np.asarray(alone.probabilities).argmax(axis=0)]
        own = sorted(set(validation) - set(training))
        out["members"].append(
            {"member": member, "held": own, "held_miou": miou(labels, own) if own else None,
             **{name: miou(labels, s) for name, s in sets.items()}}
        )  # fmt: skip
    flow = run_to_completion(
        propagate(sample.image, sample.labels_sparse, FLOW, flows=flows, keep_probabilities=False)
    )
    out["flow"] = {name: miou(np.array(flow.labels), s) for name, s in sets.items()}
    out["flow_held"] = [
        {"held": list(group), "miou": _flow_without(sample, group, flows, miou)}
        for group in comparison.held_out
    ]
    out["flow_each"] = {str(i): _flow_without(sample, [i], flows, miou) for i in painted}
    out["seconds"] = time.perf_counter() - started
    log.info("%s", json.dumps(out, default=float))
    if args.json:
        path = Path(args.json)
        runs = json.loads(path.read_text()) if path.exists() else []
        path.write_text(json.dumps([*runs, out], indent=1, default=float) + "\n")
    return 0


def _flow_without(sample: Any, slices: Any, flows: NeighbourFlows, miou: Any) -> float:
    """Flow propagation's mIoU on ``slices`` predicted from the paint with them erased."""
    others = np.array(sample.labels_sparse)
    others[list(slices)] = 0
    result = run_to_completion(
        propagate(sample.image, others, FLOW, slices=list(slices), flows=flows,
                  keep_probabilities=False)
    )  # fmt: skip
    return miou(np.array(result.labels), list(slices))


if __name__ == "__main__":
    raise SystemExit(main())
