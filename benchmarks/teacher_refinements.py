"""Ways to refine one default teacher after it is trained, scored on the Medaka sample.

    .venv/bin/python benchmarks/teacher_refinements.py --seeds 0,1,2 --jobs 2 \\
        --json benchmarks/results/teacher_refinements.json

For each seed, a teacher is trained as ``teacher_quality.py`` trains it (``make_medaka(
n_annotated=k, seed=seed)``, ``TrainConfig``/``ModelConfig`` defaults, the automatic budget)
and predicts every slice. Scored on the *unannotated* slices (mIoU over the nine organs,
background left out, against the full ground truth, as ``teacher_quality.py`` scores):

1. ``teacher``: its labels (the same number ``teacher_quality.py`` reports);
2. ``smoothed``: its probabilities smoothed across slices (a Gaussian of ``--sigmas`` slices
   along the stack's first axis, then the arg-max): does 3D continuity, applied after the
   fact, correct the slice-to-slice flicker of a 2D network?
3. ``guided``: the same smoothing, each neighbouring slice's weight also multiplied by
   ``exp(-d^2 / (2 (c * noise)^2))``, ``d`` the difference of the (in-plane blurred) image
   between the two slices at that pixel, ``noise`` the image's slice-to-slice noise (a robust
   spread of those differences) and ``c`` one of ``--guide-contrasts``: an image-guided
   (joint bilateral) filter that smooths inside an organ and stops where the image changes,
   so structures thin across slices (vertebrae) are not smoothed away;
4. ``self_trained``: one round of self-training, the product's student stage with every
   unannotated slice accepted: strategy ``kd`` with ``KDConfig()`` defaults (CE on the
   teacher's pseudo-labels + T^2 KL), started from the teacher's weights, its automatic
   budget. Does a teacher that also learns from its own predictions on the unannotated
   slices reach the issue's 0.80?

``--model '{"members": 3}'`` changes ``ModelConfig`` fields of the teacher (as in
``teacher_quality.py``): with an ensemble, the self-trained student is one network started from
a member and distilled from the ensemble's averaged prediction, as the product's student stage
does. Per organ IoU is recorded for each. ``--no-self-training`` skips (4). ``--jobs 2`` runs
two seeds at once, one torch thread each. ``--steps`` fixes both budgets (a smoke test). Prints
the JSON when no ``--json`` is given.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import logging
import multiprocessing
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import KDConfig, ModelConfig, TrainConfig
from napari_distill.core.inference import predict_bundle
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_medaka
from napari_distill.core.strategies import get_strategy

# benchmarks/ is on sys.path when run as a script
from teacher_quality import organ_scores, summary, train

log = logging.getLogger("teacher_refinements")


def image_guided_smoothing(
    probabilities: np.ndarray, image: np.ndarray, sigma: float, contrast: float
) -> np.ndarray:
    """``(K, N, H, W)`` probabilities smoothed across slices, guided by ``image`` ``(N, H, W)``.

    Slice ``z + d`` contributes to slice ``z`` with weight ``gauss(d; sigma)`` times
    ``gauss(image[z + d] - image[z]; contrast * noise)`` per pixel; ``noise`` is the robust
    standard deviation of one slice's difference from the next (most pixels lie inside an
    organ, so the median sees noise and the organ boundaries are outliers).
    """
    low, high = np.percentile(image, [1, 99])
    guide = (image.astype(np.float32) - low) / max(float(high - low), 1e-6)
    guide = ndi.gaussian_filter(guide, (0, 1, 1))  # in-plane only: keeps the slices apart
    noise = 1.4826 * float(np.median(np.abs(np.diff(guide, axis=0)))) / np.sqrt(2)
    spread = max(contrast * noise, 1e-6)
    n = guide.shape[0]
    smoothed = np.zeros(probabilities.shape, np.float32)
    total = np.zeros(guide.shape, np.float32)
    radius = int(np.ceil(2.5 * sigma))
    for shift in range(-radius, radius + 1):
        target = slice(max(0, -shift), min(n, n - shift))
        source = slice(target.start + shift, target.stop + shift)
        difference = guide[source] - guide[target]
        weight = np.exp(-(shift**2) / (2 * sigma**2) - difference**2 / (2 * spread**2))
        smoothed[:, target] += weight * probabilities[:, source]
        total[target] += weight
    return smoothed / total


def one_seed(
    k: int,
    seed: int,
    sigmas: list[float],
    threads: int,
    steps: int | None = None,
    model_overrides: dict[str, Any] | None = None,
    contrasts: tuple[float, ...] = (),
    self_training: bool = True,
) -> dict[str, Any]:
    """The teacher, its smoothed (plain and guided) probabilities and its self-trained student
    for one fish (without the student when ``self_training`` is False)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("napari_distill").setLevel(logging.WARNING)
    torch.set_num_threads(threads)
    sample = make_medaka(n_annotated=k, seed=seed)
    annotated = set(sample.annotated.tolist())
    unannotated = [i for i in range(sample.image.shape[0]) if i not in annotated]

    def scores(labels: np.ndarray) -> dict[str, Any]:
        return organ_scores(sample, labels, unannotated)

    with retained_freed_memory():  # as the CLI and the widgets train
        teacher, facts = train(
            sample.image, sample.labels_sparse, seed, steps, rgb=False,
            model_config=ModelConfig(**(model_overrides or {})),
        )  # fmt: skip
        prediction = run_to_completion(
            predict_bundle(teacher, sample.image, device="cpu", keep_probabilities=True)
        )
        probabilities = np.asarray(prediction.probabilities)
        pseudo_labels = np.asarray(prediction.labels)
        class_ids = np.asarray(prediction.class_ids)
        record: dict[str, Any] = {"k": k, "seed": seed, "teacher": scores(pseudo_labels)}
        record["teacher"].update(facts)
        record["smoothed"] = {
            str(sigma): scores(
                class_ids[ndi.gaussian_filter1d(probabilities, sigma, axis=1).argmax(axis=0)]
            )
            for sigma in sigmas
        }
        record["guided"] = {
            f"{sigma}_{contrast}": scores(
                class_ids[
                    image_guided_smoothing(probabilities, sample.image, sigma, contrast).argmax(0)
                ]
            )
            for sigma in sigmas
            for contrast in contrasts
        }
        if not self_training:
            log.info("k=%d seed=%d: %s", k, seed, summary_line(record))
            return record
        started = time.perf_counter()
        run = get_strategy("kd").build(
            teacher, sample.image, sample.labels_sparse, unannotated,
            train_config=TrainConfig(steps=steps, seed=seed), strategy_config=KDConfig(),
            device="cpu", pseudo_labels=pseudo_labels,
        )  # fmt: skip
        student = run_to_completion(run.steps())
        student_labels = run_to_completion(
            predict_bundle(student, sample.image, device="cpu", slices=unannotated)
        ).labels
        record["self_trained"] = scores(np.asarray(student_labels))
        record["self_trained"].update(
            steps=run.step, train_s=round(time.perf_counter() - started, 1)
        )
    log.info("k=%d seed=%d: %s", k, seed, summary_line(record))
    return record


def summary_line(record: dict[str, Any]) -> str:
    """The mIoU of every variant of one fish, for the log."""
    parts = [f"teacher {record['teacher']['miou']:.3f}"]
    for variant in ("smoothed", "guided"):
        if record[variant]:
            values = {key: round(v["miou"], 3) for key, v in record[variant].items()}
            parts.append(f"{variant} {values}")
    if "self_trained" in record:
        parts.append(f"self-trained {record['self_trained']['miou']:.3f}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=6, help="annotated slices")
    parser.add_argument("--seeds", default="0,1,2", help="sample and training seeds")
    parser.add_argument("--sigmas", default="0.5,1,1.5", help="smoothing across slices")
    parser.add_argument(
        "--guide-contrasts", default="", help="image-guided smoothing: c, comma separated"
    )
    parser.add_argument(
        "--no-self-training", action="store_true", help="skip the self-training round"
    )
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--steps", type=int, help="fixed steps (default: the automatic budgets)")
    parser.add_argument(
        "--model", type=json.loads, default={}, help="ModelConfig fields of the teacher, as JSON"
    )
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    seeds = [int(v) for v in args.seeds.split(",")]
    sigmas = [float(v) for v in args.sigmas.split(",")]
    contrasts = tuple(float(v) for v in args.guide_contrasts.split(",") if v)
    threads = max(1, 2 // args.jobs)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # no fork of torch's thread pools
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        futures = [
            pool.submit(
                one_seed,
                args.k,
                seed,
                sigmas,
                threads,
                args.steps,
                args.model,
                contrasts,
                not args.no_self_training,
            )
            for seed in seeds
        ]
        runs = [future.result() for future in futures]
    miou = {"teacher": summary([r["teacher"]["miou"] for r in runs])}
    for variant in ("smoothed", "guided"):
        for key in runs[0][variant]:
            miou[f"{variant}_{key}"] = summary([r[variant][key]["miou"] for r in runs])
    if not args.no_self_training:
        miou["self_trained"] = summary([r["self_trained"]["miou"] for r in runs])
    payload = {
        "command": " ".join(["benchmarks/teacher_refinements.py", *(argv or sys.argv[1:])]),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "jobs": args.jobs},
        "model_config": dataclasses.asdict(ModelConfig(**args.model)),
        "miou": miou,
        "runs": runs,
        "total_s": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(payload, indent=2, default=float)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(text)
    else:
        sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
