"""Add to the grid's earlier runs the classes painted on their held-out slices, so that their
leave-out estimates can be rescored over the same classes for both sources (issue 25).

    PYTHONPATH=src .venv/bin/python benchmarks/leave_out_rescore.py \\
        benchmarks/results/teacher_vs_propagation.json

Runs of ``teacher_vs_propagation.py`` made before the comparison recorded
``scored_class_ids`` (the foreground classes painted on the held-out slices) stored only the
per-class held-out IoUs. The paint of a run is redrawn (``make_case``: seeded, no training),
its held-out slices' classes written into the run's comparison with
``scored_class_ids_backfilled: true``, and the summary recomputed
(:func:`teacher_vs_propagation_summary.grid_summary`). Nothing else in a run changes; a run
that already has the field is left alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from napari_distill.core.evaluation.comparison import painted_classes
from teacher_vs_propagation import make_case
from teacher_vs_propagation_summary import grid_summary, summary_lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a teacher_vs_propagation.py results JSON")
    args = parser.parse_args(argv)
    path = Path(args.results)
    payload = json.loads(path.read_text())
    axis = int(payload.get("settings", {}).get("axis", 1))
    cases: dict[tuple, np.ndarray] = {}
    added = 0
    for run in payload["runs"]:
        comparison = run.get("comparison")
        if not comparison or not comparison.get("fair") or "scored_class_ids" in comparison:
            continue
        key = (run["seed"], run["resolution"], run["spacing"], run["k"])
        if key not in cases:
            cases[key] = make_case(*key, axis).sample.labels_sparse
        held = sorted({i for group in comparison["held_out"] for i in group})
        ids = [0, *(row["class_id"] for row in comparison["classes"])]
        comparison["scored_class_ids"] = list(painted_classes(cases[key][held], ids))
        comparison["scored_class_ids_backfilled"] = True
        added += 1
    payload["summary"] = grid_summary(payload["runs"])
    path.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    print(f"{added} comparison(s) given their held-out slices' classes", file=sys.stderr)
    print("\n".join(summary_lines(payload["summary"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
