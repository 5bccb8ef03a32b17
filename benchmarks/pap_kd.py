"""The ``kd`` arm of ``benchmarks/pap_smear.py``: the product's semantic pipeline, as cells.

Before the cell model, a Pap smear was a semantic task (cytoplasm / nucleus per pixel) for
the ``kd`` pipeline (method 1: teacher -> quality classifier -> KD student,
``core.pipeline.run_pipeline``). This arm runs that pipeline on the same training fields as
the cell arms: the same painted fields, labelled with the semantic classes the sample derives
from the same painted cells and nuclei (``PapSample.semantic_full``: every cell's cytoplasm,
nuclei over it), the other fields unannotated. The budget matches the cell arms: ``--steps``
teacher steps, then ``--student-steps`` student steps starting from the teacher (the ``kd``
default); the quality classifier's own steps are the product's default and come on top.

Every other setting is the pipeline's default, but for label propagation, which is off: the
fields are separate images, not slices of one volume, so nothing propagates between them.

Its student's labels on the test fields become cells as the product could give them
(``core.evaluation.cells_from_semantic``: nuclei = its watershed nucleus instances, cells = the
cytoplasm-or-nucleus mask grown from them, one plane, no overlaps), scored like the cell arms.

Run on its own, it prints the ceiling of that conversion: the test fields' true semantic
labels made cells the same way, no model (the same test fields as ``pap_smear.py``)::

    PYTHONPATH=src .venv/bin/python benchmarks/pap_kd.py --seeds 0 1 2 --test-fields 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import numpy as np

from napari_distill.core.config import TrainConfig
from napari_distill.core.evaluation import cells_from_semantic, score_cells, score_nuclei
from napari_distill.core.inference import predict_bundle
from napari_distill.core.pipeline import PipelineConfig, run_pipeline
from napari_distill.core.progress import run_to_completion
from napari_distill.core.samples import make_pap_smear


def _semantic_scores(bundle, test) -> dict:
    labels = run_to_completion(
        predict_bundle(bundle, test.image, device="cpu", keep_probabilities=False, rgb=True)
    ).labels
    return _as_cells_scores(np.asarray(labels), test)


def _as_cells_scores(labels: np.ndarray, test) -> dict:
    class_id = {name: k for k, name in test.class_names.items()}
    cells, nuclei = cells_from_semantic(labels, class_id["cytoplasm"], class_id["nucleus"])
    return {
        "cells": score_cells(cells, test.cytoplasm_planes.transpose(1, 0, 2, 3)).as_dict(),
        "nuclei": score_nuclei(nuclei, test.nuclei).as_dict(),
    }


def kd_arm(train, test, n_annotated: int, seed: int, args) -> dict:
    """Run the semantic ``kd`` pipeline on ``train`` (its first ``n_annotated`` fields painted)
    and score its student (and its teacher, under ``"teacher"``) on ``test`` as cells."""
    labels = np.zeros_like(train.semantic_full)
    labels[:n_annotated] = train.semantic_full[:n_annotated]
    base = PipelineConfig()
    config = dataclasses.replace(
        base,
        teacher=TrainConfig(steps=args.steps, seed=seed),
        student=TrainConfig(steps=args.student_steps, seed=seed),
        quality=dataclasses.replace(base.quality, seed=seed),
        propagation=None,
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pap-kd-") as out_dir:
        run = run_pipeline(
            train.image, labels, out_dir, config=config, device="cpu",
            class_names=train.class_names, rgb=True,
        )  # fmt: skip
        result = run_to_completion(run)
    seconds = time.perf_counter() - started
    stages = result.summary.stage_seconds
    return {
        **_semantic_scores(result.student, test),
        # The whole pipeline (it also predicts every training field twice and fits the
        # classifier); "teacher and student s" is the training alone, as the cell arms count.
        "train_s": seconds,
        "teacher_and_student_s": stages["teacher"] + stages["student"],
        "stage_s": stages,
        "accepted": [int(i) for i in result.selection.accepted_slices],
        "teacher": _semantic_scores(result.teacher, test),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="The ceiling of the kd arm's conversion.")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-fields", type=int, default=3)
    parser.add_argument("--size", type=int, default=512, help="field side (pixels)")
    args = parser.parse_args()
    out = {}
    for seed in args.seeds:  # the test stack of pap_smear.py's seed
        test = make_pap_smear(args.test_fields, (args.size, args.size), seed=5000 + seed)
        out[seed] = _as_cells_scores(test.semantic_full, test)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
