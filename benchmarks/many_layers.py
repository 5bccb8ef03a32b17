"""The viewer with many volumes open (issue 26): time to open a folder of 20 volumes of the
sample's size as lazy layers, and the GUI's responsiveness while they are open and while the
Teacher trains on two of them.

A real napari window (it needs a display: run it under Xvfb) at 1366 x 768. Twenty volumes of
``--shape`` (default the Medaka sample's 96 x 256 x 128, uint16) are written into a scratch
folder (two synthetic fish of different seeds, repeated; the first with its painted labels as
``fish_00_labels.tif``), then opened with the Teacher's *Open folder of volumes* path
(``open_volume_folder``: napari-distill's reader, one lazy layer per volume). A 10 ms QTimer on
the GUI thread records its ticks (``gui_latency.TickRecorder``) while

- ``browse_one_volume_alone`` (the reference): the slider moves one slice every 100 ms with
  only the first volume and its labels in the viewer;
- ``browse_as_opened``: the same with the 20 volumes open as the reader leaves them (the first
  one and its labels shown, the others hidden);
- ``browse_all_visible``: the same with all 20 shown;
- ``train_on_two``: the Teacher, *Several images* ticked with two of the volumes, trains
  ``--steps`` steps through its Train button (``--teachers N`` networks side by side, set in
  the dock as a user would; by default one, as *Several images* leaves it).

    xvfb-run -a -s "-screen 0 1366x768x24" .venv/bin/python benchmarks/many_layers.py \\
        --json benchmarks/results/many_layers.json

Reported: ``open_s`` (the call, and until the window has drawn), the process's resident memory
before and after opening (``rss_mb``: lazy layers add little), and per phase the stalls of the
GUI thread (``max_stall_ms``, ``p99_stall_ms``, ``median_gap_ms``) with the load average.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import napari
import tifffile
import torch
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from gui_latency import TickRecorder, load_average, run_event_loop_until_idle, settle
from napari_distill._widgets.common.image_set import open_volume_folder
from napari_distill.core.samples import make_medaka

logger = logging.getLogger("many_layers")


def rss_mb() -> float:
    """The process's resident memory now (MB), from /proc."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1024**2, 1)


def write_volumes(folder: Path, count: int, shape: tuple[int, ...], compress: bool) -> None:
    fish = [make_medaka(shape, n_annotated=6, seed=seed) for seed in (0, 1)]
    options = {"compression": "zlib"} if compress else {}
    for number in range(count):
        tifffile.imwrite(folder / f"fish_{number:02d}.tif", fish[number % 2].image, **options)
    tifffile.imwrite(folder / "fish_00_labels.tif", fish[0].labels_sparse)


def browse(viewer: napari.Viewer, recorder: TickRecorder, slices: int, every_ms: int) -> dict:
    """Move the slider one slice every ``every_ms`` ms, ``slices`` times, ticking meanwhile."""
    moves = {"done": 0}
    mover = QTimer()
    mover.setInterval(every_ms)

    def move() -> None:
        step = list(viewer.dims.current_step)
        step[0] = (step[0] + 1) % viewer.dims.nsteps[0]
        viewer.dims.current_step = tuple(step)
        moves["done"] += 1

    mover.timeout.connect(move)
    recorder.start()
    mover.start()
    settle(slices * every_ms / 1000.0)
    mover.stop()
    result = recorder.stop()
    result.update(slices_moved=moves["done"], load_average=load_average())
    return result


def measure(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    result: dict = {"volumes": args.volumes, "shape": list(args.shape), "compress": args.compress}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_volumes(folder, args.volumes, tuple(args.shape), args.compress)
        viewer = napari.Viewer(show=True, title="napari-distill many layers")
        viewer.window._qt_window.resize(1366, 768)
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-distill", "Teacher")
        settle(2.0)
        recorder = TickRecorder(args.tick_ms, lambda: viewer.dims.current_step[0])
        alone = viewer.open(str(folder / "fish_00.tif"), plugin="napari-distill")
        alone += viewer.open(str(folder / "fish_00_labels.tif"), plugin="napari-distill")
        settle(1.0)
        result["browse_one_volume_alone"] = browse(viewer, recorder, args.browse_slices, 100)
        for layer in alone:
            viewer.layers.remove(layer)
        settle(1.0)
        result["rss_mb"] = {"before_open": rss_mb()}

        started = time.perf_counter()
        layers = open_volume_folder(viewer, str(folder))
        called = time.perf_counter() - started
        QApplication.processEvents()
        result["open_s"] = {
            "call": round(called, 2),
            "drawn": round(time.perf_counter() - started, 2),
        }
        result["layers"] = len(layers)
        result["layer_data_types"] = sorted({type(layer.data).__name__ for layer in layers})
        settle(1.0)
        result["rss_mb"]["after_open"] = rss_mb()

        result["visible_as_opened"] = [layer.name for layer in viewer.layers if layer.visible]
        result["browse_as_opened"] = browse(viewer, recorder, args.browse_slices, 100)
        for layer in viewer.layers:
            layer.visible = True
        result["browse_all_visible"] = browse(viewer, recorder, args.browse_slices, 100)
        for layer in viewer.layers:
            layer.visible = layer.name in result["visible_as_opened"]
        result["rss_mb"]["after_browsing"] = rss_mb()

        widget.settings.fields[("train", "steps")].setValue(args.steps)
        widget.settings.fields[("train", "patience")].setValue(10_000)  # every step runs
        widget.image_set.setChecked(True)
        for row in range(widget.image_set.list.count()):
            item = widget.image_set.list.item(row)
            if item.text().split(" ")[0].rstrip(":") not in ("fish_00", "fish_01"):
                item.setCheckState(item.checkState().Unchecked)
        result["trained_on"] = [image.name for image, _ in widget.image_set.pairs()]
        if args.teachers is not None:  # as a user sets Teachers (Several images leaves 1)
            widget.settings.fields[("model", "members")].setValue(args.teachers)
        result["teachers"] = widget.settings.fields[("model", "members")].value()
        settle(1.0)
        training = TickRecorder(args.tick_ms, lambda: widget.run.step if widget.run else -1)
        training.start()
        started = time.perf_counter()
        widget.panel.train_button.click()
        run_event_loop_until_idle(widget, timeout_s=3600)
        phase = training.stop()
        phase.update(
            steps=int(widget.run.step) if widget.run is not None else 0,
            wall_s=round(time.perf_counter() - started, 1),
            load_average=load_average(),
        )
        result["train_on_two"] = phase
        result["rss_mb"]["after_training"] = rss_mb()
        viewer.close()
    result.update(
        tick_interval_ms=args.tick_ms,
        cpu_count=os.cpu_count(),
        napari=napari.__version__,
        torch=torch.__version__,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(96, 256, 128))
    parser.add_argument("--compress", action="store_true", help="zlib TIFFs (dask layers)")
    parser.add_argument("--steps", type=int, default=60, help="teacher steps on two volumes")
    parser.add_argument(
        "--teachers", type=int, help="Teachers set in the dock before training (default: as left)"
    )
    parser.add_argument("--browse-slices", type=int, default=40)
    parser.add_argument("--tick-ms", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = measure(args)
    text = json.dumps(result, indent=2)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    logger.info("%s", text)


if __name__ == "__main__":
    main()
