"""What the semantic clean-up does to a six-slice teacher's labels on the Medaka sample.

    .venv/bin/python benchmarks/cleanup.py --seeds 0,1,2 --jobs 2 \\
        --json benchmarks/results/cleanup.json

For each seed, the default teacher of ``teacher_quality.py`` (``make_medaka(n_annotated=6,
seed=seed)``, ``TrainConfig()`` / ``ModelConfig()`` defaults, one torch thread per job;
``--model '{"members": 3}'``: the ensemble of three) predicts every slice, and its labels are
scored (mean IoU over the nine organs on the unannotated slices, and each organ's IoU) as
they are and after :func:`~napari_distill.core.evaluation.clean_semantic`:

- ``every_class``: the largest 3D piece of every class (``predict --largest-component``);
- ``one_body``: the largest piece of the organs named by ``--one-body`` only (``predict
  --largest-component IDS``, the Student widget's *one piece of:*), by default the sample's
  organs that are one body (not the paired eyes and lenses, not the column of vertebrae);
- ``min_size_N``: pieces smaller than N voxels removed from every class (``--min-sizes``).

Prints the JSON when no ``--json`` is given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from napari_distill.core.config import ModelConfig
from napari_distill.core.evaluation import clean_semantic
from napari_distill.core.samples import make_medaka

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher_quality import organ_scores, predict, train  # noqa: E402

ONE_BODY = "brain,heart,liver,gut,kidney,swim bladder"


def one_seed(
    seed: int,
    one_body: list[str],
    min_sizes: list[int],
    steps: int | None = None,
    model: dict[str, Any] | None = None,
) -> dict[str, Any]:
    torch.set_num_threads(1)
    sample = make_medaka(n_annotated=6, seed=seed)
    annotated = set(sample.annotated.tolist())
    unannotated = [i for i in range(sample.image.shape[0]) if i not in annotated]
    bundle, facts = train(
        sample.image,
        sample.labels_sparse,
        seed,
        steps,
        rgb=False,
        model_config=ModelConfig(**(model or {})),
    )
    labels, predict_s = predict(bundle, sample.image, list(range(sample.image.shape[0])), False)
    ids = {name: class_id for class_id, name in sample.class_names.items()}
    unknown = sorted(set(one_body) - set(ids))
    if unknown:
        raise SystemExit(f"--one-body: no organ named {unknown} in the sample")
    one_body_ids = tuple(ids[name] for name in one_body)
    variants = {
        "none": labels,
        "every_class": clean_semantic(labels),
        "one_body": clean_semantic(labels, largest_component_classes=one_body_ids),
    }
    for size in min_sizes:
        variants[f"min_size_{size}"] = clean_semantic(labels, False, size)
    started = time.perf_counter()
    scores = {name: organ_scores(sample, value, unannotated) for name, value in variants.items()}
    return {
        "seed": seed,
        "annotated": sorted(annotated),
        "one_body": one_body,
        "scores": scores,
        "predict_s": predict_s,
        "score_s": round(time.perf_counter() - started, 1),
        **facts,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0,1,2", help="sample and training seeds")
    parser.add_argument("--one-body", default=ONE_BODY, help="organs kept to one piece")
    parser.add_argument("--min-sizes", default="50", help="voxel counts, comma separated")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--steps", type=int, help="fixed steps (default: the automatic budget)")
    parser.add_argument(
        "--model",
        type=json.loads,
        default={},
        help="ModelConfig fields to change, as JSON, e.g. '{\"members\": 3}' (an ensemble)",
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    one_body = [name.strip() for name in args.one_body.split(",") if name.strip()]
    min_sizes = [int(s) for s in args.min_sizes.split(",") if s.strip()]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        n = len(seeds)
        runs = list(
            pool.map(
                one_seed, seeds, [one_body] * n, [min_sizes] * n, [args.steps] * n, [args.model] * n
            )
        )
    variants = list(runs[0]["scores"])
    payload = {
        "command": " ".join(["benchmarks/cleanup.py", *(argv or sys.argv[1:])]),
        "model": args.model,
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
        "mean_miou": {
            name: round(sum(run["scores"][name]["miou"] for run in runs) / len(runs), 4)
            for name in variants
        },
        "runs": runs,
    }
    text = json.dumps(payload, indent=1)
    if args.json:
        Path(args.json).write_text(text)
    else:
        print(text)
    for run in runs:
        line = ", ".join(f"{name} {run['scores'][name]['miou']:.3f}" for name in variants)
        print(f"seed {run['seed']}: {line}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
