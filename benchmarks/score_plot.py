"""What moving the Quality review's slice line costs the GUI thread, against a full draw.

The review tab's score plot marks the slice the viewer shows; scrolling the viewer's slider
moves that mark at every step. It is blitted over the last full draw's pixels
(:meth:`~napari_distill._widgets.quality.score_plot.ScorePlot.set_current`); a full draw of the
figure is what it cost before. Both are timed in one run on the same plot, so the ratio holds
on a busy machine too.

    xvfb-run -a .venv/bin/python benchmarks/score_plot.py --slices 96 --repeat 30 \\
        --json benchmarks/results/score_plot.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication


def measure(slices: int, repeat: int) -> dict:
    from napari_distill._widgets.quality.score_plot import ScorePlot
    from napari_distill.core.quality import Selection

    app = QApplication.instance() or QApplication([])
    rng = np.random.default_rng(0)
    plot = ScorePlot()
    plot.resize(420, 300)
    plot.show()
    plot.set_selection(Selection.from_scores({i: float(rng.random()) for i in range(slices)}))
    for _ in range(10):
        app.processEvents()

    def timed(action) -> list[float]:
        out = []
        for step in range(repeat):
            start = time.perf_counter()
            action(step % slices)
            app.processEvents()
            out.append(1e3 * (time.perf_counter() - start))
        return out

    def full_draw(index: int) -> None:
        plot.set_current(index)
        plot.canvas.draw()

    full = timed(full_draw)
    blitted = timed(plot.set_current)
    return {
        "slices": slices,
        "repeat": repeat,
        "full_draw_ms": {"median": float(np.median(full)), "max": float(max(full))},
        "set_current_ms": {"median": float(np.median(blitted)), "max": float(max(blitted))},
        "ratio_of_medians": float(np.median(full) / np.median(blitted)),
        "load_average": list(os.getloadavg()),
        "machine": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=96, help="slices scored")
    parser.add_argument("--repeat", type=int, default=30, help="moves timed, each way")
    parser.add_argument("--json", help="write the results here (else print them)")
    args = parser.parse_args(argv)
    result = json.dumps(measure(args.slices, args.repeat), indent=2) + "\n"
    if args.json:
        Path(args.json).write_text(result)
    sys.stdout.write(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
