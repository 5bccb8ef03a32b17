"""Prediction speed and memory of napari-distill on a synthetic CT-like stack (run by hand).

    .venv/bin/python benchmarks/speed.py [--json benchmarks/results/speed.json]

Prints one JSON object. Speeds are ratios measured in one process with the variants
interleaved round by round (the median per variant is kept), so machine load cancels out:

- ``overhead_vs_floor``: our ``predict_stack`` (every feature on: tissue crop, empty-tile
  skip, tiles sized from memory, softmax, labels, probabilities kept) / the bare forward pass
  of the same network over every whole, pre-loaded, pre-normalised slice. Target <= 1.10;
  below 1 where cropping pays. ``overhead_vs_floor_no_crop`` is the same without crop/skip.
- ``speedup_vs_monai``: MONAI ``sliding_window_inference`` (roi 256x256, overlap 0.25,
  Gaussian blending, on pre-loaded slices) / ours. Target >= 2. ``null`` without MONAI
  (``pip install monai``; it is not a dependency of napari-distill).
- ``student_cost_ratio``: student (``ModelConfig.student()``) / teacher, both through ours.
- ``retained_memory_speedup``: ours / ours with glibc keeping freed memory for reuse
  (``core.allocator.retained_freed_memory``, which the CLI and the widgets turn on while they
  compute); ``overhead_vs_floor_as_shipped`` is that run over the floor. The other variants
  run with glibc's defaults.
- ``peak_rss_mb`` / ``stack_mb``: a memory-mapped stack about four times larger than the
  peak resident memory of the process predicting it (with ``out_dir`` memory maps), measured
  in a subprocess with ``resource.getrusage`` (a small U-Net, 4 channels x 3 levels, keeps
  that run short; the peak includes torch itself, about 300 MB).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from napari_distill.core.allocator import retained_freed_memory
from napari_distill.core.config import ModelConfig, PredictConfig
from napari_distill.core.inference import predict_stack
from napari_distill.core.models import UNet
from napari_distill.core.preprocess import Normalization, as_stack, slice_input
from napari_distill.core.progress import run_to_completion

CLASS_IDS = (0, 1, 2, 3)


def ct_like_slice(index: int, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy air background and a fish-like body filling about a third of the slice."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32) / size
    wobble = 0.02 * math.sin(2 * math.pi * index / max(n, 1))
    body = ((yy - 0.5 - wobble) / 0.30) ** 2 + ((xx - 0.5) / 0.36) ** 2 < 1  # ~34% of the area
    organ = ((yy - 0.45) / 0.08) ** 2 + ((xx - 0.55 + wobble) / 0.12) ** 2 < 1
    bone = ((yy - 0.62) / 0.03) ** 2 + ((xx - 0.40) / 0.20) ** 2 < 1
    out = rng.normal(-1000.0, 15.0, size=(size, size)).astype(np.float32)
    out[body] = rng.normal(40.0, 20.0, size=int(body.sum()))
    out[organ] += 80.0
    out[bone] += 700.0
    return out


def make_stack(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([ct_like_slice(i, n, size, rng) for i in range(n)])


def model_for(config: ModelConfig) -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(config).eval()


def floor_pass(model: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    with torch.inference_mode():
        for x in inputs:
            model(x)


def monai_pass(model: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    from monai.inferers import sliding_window_inference

    with torch.inference_mode():
        for x in inputs:
            logits = sliding_window_inference(
                x, roi_size=(256, 256), sw_batch_size=4, predictor=model,
                overlap=0.25, mode="gaussian",
            )  # fmt: skip
            torch.softmax(logits, dim=1)


def ours_pass(
    model: torch.nn.Module, stack: np.ndarray, norm: Normalization, config: PredictConfig
) -> None:
    run_to_completion(
        predict_stack(
            model, stack, normalization=norm, class_ids=CLASS_IDS, config=config, device="cpu"
        )
    )


def retained_pass(model: torch.nn.Module, stack: np.ndarray, norm: Normalization) -> None:
    """``ours`` as the CLI and the widgets run it: glibc keeps freed memory for reuse."""
    with retained_freed_memory():
        ours_pass(model, stack, norm, PredictConfig())


def time_rounds(variants: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds per variant; the order rotates every round so none always runs first."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def memory_child(stack_path: str, shape: list[int], out_dir: str) -> None:
    """Run in a subprocess: predict a memory-mapped stack and print the peak RSS."""
    image = np.memmap(stack_path, dtype=np.float32, mode="r", shape=tuple(shape))
    norm = Normalization.from_image(as_stack(image))
    # Memory boundedness is a property of the reader and writers; a small network keeps this
    # run short (its one-slice activations are still part of the peak).
    config = ModelConfig(num_classes=len(CLASS_IDS), base_channels=4, depth=3)
    # As the CLI runs it: freed memory kept for reuse must not make the peak grow with the stack.
    with retained_freed_memory():
        run_to_completion(
            predict_stack(
                model_for(config),
                image,
                normalization=norm,
                class_ids=CLASS_IDS,
                device="cpu",
                out_dir=out_dir,
            )  # fmt: skip
        )
    # ru_maxrss is kB on Linux, but it also keeps the resident size the parent had when it
    # forked this process (the kernel carries the high-water mark across exec), so the
    # process's own high-water mark (VmHWM) is preferred where /proc has it.
    maxrss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": _own_peak_mb() or maxrss_mb, "ru_maxrss_mb": maxrss_mb}))


def _own_peak_mb() -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def measure_memory(size: int, slices: int, workdir: Path) -> dict[str, float]:
    path = workdir / "stack.f32"
    shape = (slices, size, size)
    image = np.memmap(path, dtype=np.float32, mode="w+", shape=shape)
    rng = np.random.default_rng(1)
    for i in range(slices):
        image[i] = ct_like_slice(i, slices, size, rng)
    image.flush()
    del image
    command = [sys.executable, __file__, "--memory-child", str(path), *map(str, shape)]
    command.append(str(workdir / "out"))
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["stack_mb"] = path.stat().st_size / 2**20
    return record


def memory_benchmark(size: int, target_ratio: float, probe_slices: int = 16) -> dict:
    """Find the peak RSS of a short run, then predict a stack ``target_ratio`` times larger."""
    with tempfile.TemporaryDirectory() as tmp:
        probe = measure_memory(size, probe_slices, Path(tmp))
    slice_mb = size * size * 4 / 2**20
    slices = math.ceil(target_ratio * probe["peak_rss_mb"] / slice_mb)
    with tempfile.TemporaryDirectory() as tmp:
        result = measure_memory(size, slices, Path(tmp))
    result["memory_slices"] = slices
    result["stack_over_peak_rss"] = result["stack_mb"] / result["peak_rss_mb"]
    result["probe_peak_rss_mb"] = probe["peak_rss_mb"]
    return result


def speed_benchmark(slices: int, size: int, rounds: int) -> dict:
    stack = make_stack(slices, size)
    norm = Normalization.from_image(as_stack(stack))
    teacher = model_for(ModelConfig(num_classes=len(CLASS_IDS)))
    student = model_for(ModelConfig(num_classes=len(CLASS_IDS)).student())
    inputs = [torch.from_numpy(slice_input(as_stack(stack), i, norm))[None] for i in range(slices)]
    plain = PredictConfig(crop_to_tissue=False, skip_empty_tiles=False)
    variants: dict[str, Callable[[], None]] = {
        "floor": lambda: floor_pass(teacher, inputs),
        "ours": lambda: ours_pass(teacher, stack, norm, PredictConfig()),
        "ours_no_crop": lambda: ours_pass(teacher, stack, norm, plain),
        "student": lambda: ours_pass(student, stack, norm, PredictConfig()),
        "ours_retained": lambda: retained_pass(teacher, stack, norm),
    }
    note = None
    try:
        import monai  # noqa: F401
    except ImportError:
        note = "monai is not installed (pip install monai); speedup_vs_monai not measured"
    else:
        variants["monai"] = lambda: monai_pass(teacher, inputs)
    floor_pass(teacher, inputs[:2])  # warm-up: allocator, thread pool
    # First use of a model measures its receptive field once (cached): reported, not timed.
    start = time.perf_counter()
    ours_pass(teacher, stack[:1], norm, PredictConfig())
    first_call_s = time.perf_counter() - start
    ours_pass(student, stack[:1], norm, PredictConfig())
    seconds = time_rounds(variants, rounds)
    voxels = slices * size * size
    result = {
        "overhead_vs_floor": seconds["ours"] / seconds["floor"],
        "overhead_vs_floor_no_crop": seconds["ours_no_crop"] / seconds["floor"],
        "speedup_vs_monai": seconds["monai"] / seconds["ours"] if "monai" in seconds else None,
        "student_cost_ratio": seconds["student"] / seconds["ours"],
        "retained_memory_speedup": seconds["ours"] / seconds["ours_retained"],
        "overhead_vs_floor_as_shipped": seconds["ours_retained"] / seconds["floor"],
        "voxels_per_s": voxels / seconds["ours"],
        "seconds": seconds,
        "first_slice_with_setup_s": first_call_s,
        "stack_shape": [slices, size, size],
        "rounds": rounds,
    }
    if note:
        result["note"] = note
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, help="also write the JSON to this file")
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--memory-size", type=int, default=256, help="slice side, memory run")
    parser.add_argument("--memory-ratio", type=float, default=4.0, help="stack / peak RSS")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        path, *shape, out_dir = args.memory_child
        memory_child(path, [int(v) for v in shape], out_dir)
        return
    result = {
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
    }
    result.update(speed_benchmark(args.slices, args.size, args.rounds))
    if args.json:  # keep the speed results even if the long memory run is interrupted
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not args.skip_memory:
        result.update(memory_benchmark(args.memory_size, args.memory_ratio))
    text = json.dumps(result, indent=2)
    sys.stdout.write(text + "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
