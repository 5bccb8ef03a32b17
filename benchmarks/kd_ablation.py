"""Which part of the KD term helps or hurts? Students of one teacher with varied KD settings.

    .venv/bin/python benchmarks/kd_ablation.py --json benchmarks/results/kd_ablation.json

Same data, teacher, quality classifier and budget as ``distill_quality.py`` (its ``prepare``);
every student is strategy ``kd`` on the accepted slices, from the teacher's weights, and is
scored by mIoU (points) on the unannotated slices. Variants (``--variants``, by name):

- ``ce``: no KD term (``lambda_kd = 0``), the supervised loss on pseudo-labels alone;
- ``kd``: the defaults (T = 2, lambda_kd = 1, KD on accepted slices only);
- ``kd_t1``: T = 1; ``kd_t4``: T = 4;
- ``kd_lambda_0.25``: lambda_kd = 0.25;
- ``kd_on_annotated``: the KD term on the annotated slices too;
- ``ce_lr_1e-3``, ``kd_lr_1e-3``: ``ce`` and ``kd`` fine-tuned at a peak learning rate of
  1e-3 instead of the teacher's 5e-3 (a student starts from trained weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distill_quality import evaluate, prepare, summarise, train_student
from napari_distill.core.config import KDConfig, QualityConfig

log = logging.getLogger("kd_ablation")

VARIANTS: dict[str, KDConfig] = {
    "ce": KDConfig(lambda_kd=0.0),
    "kd": KDConfig(),
    "kd_t1": KDConfig(temperature=1.0),
    "kd_t4": KDConfig(temperature=4.0),
    "kd_lambda_0.25": KDConfig(lambda_kd=0.25),
    "kd_on_annotated": KDConfig(kd_on_annotated=True),
    "ce_lr_1e-3": KDConfig(lambda_kd=0.0),
    "kd_lr_1e-3": KDConfig(),
}
LEARNING_RATES = {"ce_lr_1e-3": 1e-3, "kd_lr_1e-3": 1e-3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", help="write the results here (else print them)")
    parser.add_argument("--ks", type=int, nargs="+", default=[4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=600, help="teacher and student steps")
    parser.add_argument("--quality-steps", type=int, default=QualityConfig.steps)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: dict[str, Any] = {
        "settings": {
            "ks": args.ks,
            "seeds": args.seeds,
            "steps": args.steps,
            "quality_steps": args.quality_steps,
            "variants": {name: dataclasses.asdict(VARIANTS[name]) for name in args.variants},
            "learning_rates": LEARNING_RATES,
        }
    }
    for k in args.ks:
        runs: dict[str, list[float]] = {name: [] for name in ("teacher", *args.variants)}
        for seed in args.seeds:
            prepared = prepare(k, seed, args.steps, args.quality_steps)
            runs["teacher"].append(
                evaluate(prepared.teacher, prepared.image, prepared.truth, prepared.unannotated)
            )
            for name in args.variants:
                train_config = prepared.fixed
                if name in LEARNING_RATES:
                    train_config = dataclasses.replace(
                        train_config, learning_rate=LEARNING_RATES[name]
                    )
                score = train_student(prepared, prepared.accepted, VARIANTS[name], train_config)
                runs[name].append(score)
                log.info("k=%d seed=%d %s: %.2f mIoU", k, seed, name, score)
        entry = {name: summarise(values) for name, values in runs.items()}
        # paired differences against CE alone: the seeds' noise cancels in part
        if "ce" in runs:
            base = np.asarray(runs["ce"])
            for name in args.variants:
                if name != "ce":
                    entry[f"{name}_minus_ce"] = summarise(list(np.asarray(runs[name]) - base))
        out[str(k)] = entry
    out["total_seconds"] = time.perf_counter() - started
    text = json.dumps(out, indent=2) + "\n"
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
