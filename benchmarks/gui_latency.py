"""GUI responsiveness while the Teacher widget trains and predicts in its worker.

A real napari viewer (it needs a display: run it under Xvfb) opens the Medaka sample, docks the
Teacher widget and starts training through the widget's Train button, so the very code path a
user runs is measured. A QTimer on the GUI thread ticks every ``--tick-ms``; the gaps between
ticks show how long the event loop was blocked (by the GIL, a slot or a redraw). The same is
measured during the prediction of the whole volume.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/gui_latency.py \\
        --steps 150 --repeat 5 --json benchmarks/results/gui_latency.json

Reported (milliseconds): ``max_stall_ms`` and ``p99_stall_ms`` of the gaps between ticks
beyond the tick interval, ``median_gap_ms``, plus ``ticks``, ``steps`` and the wall time, for
the training phase and, under ``predict``, for the prediction. ``load_average`` is the
machine's 1/5/15-minute load before and after the run: on a shared machine other jobs take
the cores the GUI thread needs, and stalls grow with them.

``--repeat N`` runs the whole measurement N times, each in a fresh process (as a user starts
napari), and reports every run and the spread (min / median / max) of each statistic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import napari
import numpy as np
import torch
from qtpy.QtCore import QEventLoop, QTimer

logger = logging.getLogger("gui_latency")


class TickRecorder:
    """Records the times a GUI-thread QTimer fires."""

    def __init__(self, interval_ms: int, progress: Callable[[], int]) -> None:
        self.interval_ms = interval_ms
        self.progress = progress  # e.g. the training step at each tick
        self.times: list[float] = []
        self.marks: list[int] = []
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        self.times.append(time.perf_counter())
        self.marks.append(self.progress())

    def start(self) -> None:
        self.times.clear()
        self.marks.clear()
        self.timer.start()

    def stop(self) -> dict[str, float]:
        self.timer.stop()
        gaps_ms = np.diff(np.asarray(self.times)) * 1000.0
        if gaps_ms.size == 0:
            return {"ticks": len(self.times)}
        stalls = np.maximum(0.0, gaps_ms - self.interval_ms)
        worst = np.argsort(stalls)[::-1][:5]
        return {
            "worst_stalls": [
                {
                    "ms": round(float(stalls[i]), 1),
                    "at_s": round(self.times[i] - self.times[0], 2),
                    "progress": self.marks[i + 1],
                }
                for i in worst
            ],
            "ticks": len(self.times),
            "max_stall_ms": round(float(stalls.max()), 1),
            "p99_stall_ms": round(float(np.percentile(stalls, 99)), 1),
            "p95_stall_ms": round(float(np.percentile(stalls, 95)), 1),
            "median_gap_ms": round(float(np.median(gaps_ms)), 1),
            "max_gap_ms": round(float(gaps_ms.max()), 1),
        }


def run_event_loop_until_idle(widget, timeout_s: float) -> None:
    """Run a real Qt event loop (no sleeping on the GUI thread) until the worker is done."""
    loop = QEventLoop()
    poll = QTimer()
    poll.setInterval(50)
    deadline = time.monotonic() + timeout_s

    def check() -> None:
        if not widget.runner.is_running or time.monotonic() > deadline:
            loop.quit()

    poll.timeout.connect(check)
    poll.start()
    loop.exec()
    poll.stop()
    if widget.runner.is_running:
        raise TimeoutError(f"the worker did not finish within {timeout_s:.0f} s")


def settle(seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def load_average() -> list[float]:
    """The 1, 5 and 15-minute load averages (runnable processes; 2 cores are full at 2)."""
    return [round(value, 2) for value in os.getloadavg()]


def measure(steps: int, tick_ms: int, predict: bool) -> dict:
    load_before = load_average()
    viewer = napari.Viewer(show=True, title="napari-distill GUI latency")
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open_sample("napari-distill", "medaka_ct")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-distill", "Teacher")
    widget.settings.fields[("train", "steps")].setValue(steps)
    widget.settings.fields[("train", "patience")].setValue(10_000)  # run every step
    settle(3.0)  # a user looks at the widget before clicking Train; it preloads torch meanwhile
    recorder = TickRecorder(tick_ms, lambda: widget.run.step if widget.run is not None else -1)

    recorder.start()
    started = time.perf_counter()
    widget.panel.train_button.click()
    run_event_loop_until_idle(widget, timeout_s=3600)
    result = recorder.stop()
    result.update(
        steps=int(widget.run.step) if widget.run is not None else 0,
        wall_s=round(time.perf_counter() - started, 1),
        curve_redraws=widget.panel.plot.redraws,
    )
    if predict:
        recorder.start()
        started = time.perf_counter()
        widget.predict_button.click()
        run_event_loop_until_idle(widget, timeout_s=3600)
        predicted = recorder.stop()
        predicted.update(
            slices=int(viewer.layers[-1].data.shape[0]),
            wall_s=round(time.perf_counter() - started, 1),
        )
        result["predict"] = predicted
    result.update(
        tick_interval_ms=tick_ms,
        image_shape=list(widget.image_picker.layer().data.shape),
        load_average={"before": load_before, "after": load_average()},
        torch_threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        machine=platform.processor() or platform.machine(),
        torch=torch.__version__,
        napari=napari.__version__,
    )
    viewer.close()
    return result


SPREAD_KEYS = ("max_stall_ms", "p99_stall_ms", "p95_stall_ms", "median_gap_ms", "wall_s")


def spread(runs: list[dict]) -> dict:
    """min / median / max over runs of each statistic, for training and prediction."""
    phases = {"train": runs, "predict": [run["predict"] for run in runs if "predict" in run]}
    summary: dict[str, dict] = {}
    for phase, results in phases.items():
        for key in SPREAD_KEYS:
            values = [result[key] for result in results if key in result]
            if values:
                summary.setdefault(phase, {})[key] = {
                    "min": min(values),
                    "median": round(float(np.median(values)), 1),
                    "max": max(values),
                    "each": values,
                }
    return summary


def repeat(args: argparse.Namespace) -> dict:
    """Run the measurement ``args.repeat`` times, each in a fresh process."""
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for index in range(args.repeat):
            out = Path(scratch) / f"run{index}.json"
            command = [sys.executable, __file__, "--steps", str(args.steps)]
            command += ["--tick-ms", str(args.tick_ms), "--json", str(out)]
            command += ["--no-predict"] if args.no_predict else []
            subprocess.run(command, check=True)
            runs.append(json.loads(out.read_text()))
            logger.info("run %d: max stall %.1f ms", index + 1, runs[-1]["max_stall_ms"])
    return {"runs": runs, "spread": spread(runs), "repeats": args.repeat}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps (default 150)")
    parser.add_argument("--tick-ms", type=int, default=10, help="GUI timer interval (ms)")
    parser.add_argument("--no-predict", action="store_true", help="skip the prediction phase")
    parser.add_argument("--json", type=Path, help="write the results to this JSON file")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs, each in a fresh process (default 1)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.repeat > 1:
        result = repeat(args)
    else:
        result = measure(args.steps, args.tick_ms, predict=not args.no_predict)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
        logger.info("wrote %s", args.json)
    logger.info("%s", text)


if __name__ == "__main__":
    main()
