"""The teacher's training step time by torch CPU threads, alone and beside a second busy process.

    .venv/bin/python benchmarks/threads.py --rounds 5 --json benchmarks/results/threads.json

Issue 30: `make demo` took 80 minutes instead of about 11 on a 2-core machine that also ran
one other training; the teacher's steps went from about 0.17 s to 1.2-2 s, far more than a
fair share of the cores explains. This measures why, and which thread count to use.

**What is timed.** The real teacher training of ``napari-distill run --sample medaka``:
``make_medaka()`` and ``train_teacher`` with ``ModelConfig()`` / ``TrainConfig()`` (the
automatic budget), on the CPU, under ``retained_freed_memory()`` as the CLI trains; a step's
time is the wall time between two ``TrainStep`` records (validation included: medians
ignore it).

**Alone and beside, interleaved.** A second process (``--worker busy``), started and stopped
by the benchmark (and ending itself after ``--busy-max-s``), trains the same teacher with
torch's defaults, as another ``napari-distill run`` would. The measuring process
(``--worker measure``) trains in blocks of ``--block`` steps (the first step of a block is
not counted), and before each block sets its thread count and pauses (``SIGSTOP``: *alone*)
or resumes (``SIGCONT``: *beside*) the busy process. Blocks of every (threads, condition)
pair alternate in an order that rotates every round (``--rounds``), so a change in the
machine's other load (other people's test suites) falls on all of them alike. The busy
process's steps ended per second of our *beside* blocks are kept too (what our setting costs
the other job).

**Variants**, one measuring process each (OpenMP reads its environment once, at start):
``default`` (the OpenMP environment unset, as users run), ``passive``
(``OMP_WAIT_POLICY=PASSIVE``: a thread that waits sleeps at once instead of spinning),
``active`` (``OMP_WAIT_POLICY=ACTIVE``: it spins until work comes) and ``interop1``
(``torch.set_num_interop_threads(1)``). The busy process runs with torch's defaults, unless
``--busy-threads`` / ``--busy-wait-policy`` say otherwise (another napari-distill with its
own setting).
``--variants`` picks some of them. ``--repeats`` runs every variant again with a new busy
process; the spread is max - min over the repeats. The load average (``os.getloadavg()``) is
recorded at the start and end of the run and of every measuring process.

Prints the JSON (``--json`` also saves it). ``summary["<variant>/t<N>"]``, one value per
repeat: the median step alone and beside, beside / alone, the busy process's steps per
second, and ``over_t1``: the median over 1 thread's in the same process and condition, the
comparison a moving machine load disturbs least.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "passive": {"env": {"OMP_WAIT_POLICY": "PASSIVE"}},
    "active": {"env": {"OMP_WAIT_POLICY": "ACTIVE"}},
    "interop1": {"interop": 1},
}
CONDITIONS = ("alone", "beside")


def _teacher_run() -> Any:
    """The demo's teacher training on the default Medaka sample, not yet started."""
    from napari_distill.core.samples import make_medaka
    from napari_distill.core.training import train_teacher

    sample = make_medaka()
    return train_teacher(sample.image, sample.labels_sparse, device="cpu")


def measure_worker(args: argparse.Namespace) -> None:
    """Interleaved blocks of every (threads, condition); print one JSON line."""
    import torch

    from napari_distill.core.allocator import retained_freed_memory

    default_threads = torch.get_num_threads()
    if args.interop is not None:
        torch.set_num_interop_threads(args.interop)  # before any inter-op work
    threads = [int(n) for n in args.threads.split(",")]
    pairs = [(n, condition) for n in threads for condition in CONDITIONS]
    blocks: list[dict[str, Any]] = []
    steps = _teacher_run().steps()
    try:
        with retained_freed_memory():
            for _ in range(args.warmup):
                next(steps)
            for round_index in range(args.rounds):
                shift = round_index % len(pairs)
                for n, condition in pairs[shift:] + pairs[:shift]:
                    torch.set_num_threads(n)
                    pause = signal.SIGSTOP if condition == "alone" else signal.SIGCONT
                    os.kill(args.busy_pid, pause)
                    next(steps)  # the step that meets the change is not counted
                    start, durations = time.time(), []
                    for _ in range(args.block):
                        before = time.perf_counter()
                        next(steps)
                        durations.append(time.perf_counter() - before)
                    blocks.append(
                        {"threads": n, "condition": condition, "window": [start, time.time()]}
                        | {"steps_s": [round(d, 4) for d in durations]}
                    )
    finally:
        os.kill(args.busy_pid, signal.SIGCONT)
    payload = {
        "default_threads": default_threads,
        "interop_threads": torch.get_num_interop_threads(),
        "blocks": blocks,
    }
    print(json.dumps(payload))


def busy_worker(max_seconds: float, threads: int | None) -> None:
    """Train the teacher (with ``threads``, or torch's default) for at most ``max_seconds`` of
    wall time; print ``<unix time at the end of the step> <step seconds>`` after every step."""
    import torch

    from napari_distill.core.allocator import retained_freed_memory

    if threads is not None:
        torch.set_num_threads(threads)

    started = time.time()
    while time.time() - started < max_seconds:
        with retained_freed_memory():
            last = time.perf_counter()
            for _record in _teacher_run().steps():
                now = time.perf_counter()
                print(f"{time.time():.3f} {now - last:.4f}", flush=True)
                last = now
                if time.time() - started >= max_seconds:
                    return


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    return env | extra


def _busy_env(args: argparse.Namespace) -> dict[str, str]:
    policy = args.busy_wait_policy
    return {} if policy is None else {"OMP_WAIT_POLICY": policy}


def _busy_steps(path: Path) -> list[tuple[float, float]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((float(parts[0]), float(parts[1])))
    return rows


def measure(variant: str, busy_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    """One measuring process of ``variant``; its JSON result and the load around it."""
    settings = VARIANTS[variant]
    command = [sys.executable, __file__, "--worker", "measure", "--busy-pid", str(busy_pid)]
    command += ["--threads", args.threads, "--warmup", str(args.warmup)]
    command += ["--block", str(args.block), "--rounds", str(args.rounds)]
    if "interop" in settings:
        command += ["--interop", str(settings["interop"])]
    load_before = _load()
    done = subprocess.run(
        command,
        env=_environment(settings.get("env", {})),
        capture_output=True,
        text=True,
        timeout=args.busy_max_s,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant}: the measuring process failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result | {"variant": variant, "load_before": load_before, "load_after": _load()}


def one_repeat(repeat: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every variant beside one busy process (started here, always stopped here)."""
    names = args.variants
    shift = repeat % len(names)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        log_path = Path(folder) / "busy.log"
        with open(log_path, "w") as log_file:
            busy = subprocess.Popen(
                [sys.executable, __file__, "--worker", "busy"]
                + ["--busy-max-s", str(args.busy_max_s)]
                + ([] if args.busy_threads is None else ["--busy-threads", str(args.busy_threads)]),
                env=_environment(_busy_env(args)),
                stdout=log_file,
                stderr=subprocess.DEVNULL,
            )
            try:
                deadline = time.monotonic() + 180
                while len(_busy_steps(log_path)) < args.warmup and time.monotonic() < deadline:
                    if busy.poll() is not None:
                        raise RuntimeError("the busy process ended before its warm-up")
                    time.sleep(0.5)
                for name in names[shift:] + names[:shift]:
                    results.append(measure(name, busy.pid, args) | {"repeat": repeat})
                    print(f"repeat {repeat} {name}: done", file=sys.stderr, flush=True)
            finally:
                os.kill(busy.pid, signal.SIGCONT)  # a stopped process does not see SIGTERM
                busy.terminate()
                try:
                    busy.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    busy.kill()
                    busy.wait()
        busy_steps = _busy_steps(log_path)
    for result in results:
        for block in result["blocks"]:
            start, end = block["window"]
            # Steps the busy process ended inside the block: its throughput beside us (a
            # step takes seconds there, longer than a block, so durations would miss most).
            block["busy_steps_ended"] = sum(start <= t <= end for t, _ in busy_steps)
    return results


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _rate(blocks: list[dict[str, Any]]) -> float | None:
    seconds = sum(b["window"][1] - b["window"][0] for b in blocks)
    return round(sum(b["busy_steps_ended"] for b in blocks) / seconds, 3) if seconds else None


def summarise(
    results: list[dict[str, Any]], names: list[str], threads: list[int]
) -> dict[str, Any]:
    """Per variant and thread count, per repeat: the median step alone and beside, their
    ratio, the busy process's steps per second beside, and the ratio to 1 thread measured in
    the same process (interleaved: the most robust comparison on a machine whose load moves)."""
    out: dict[str, Any] = {}
    repeats = sorted({r["repeat"] for r in results})
    for name in names:
        ones: dict[str, list[float | None]] = {}
        for n in sorted(threads):
            row: dict[str, Any] = {}
            for condition in CONDITIONS:
                row[f"{condition}_median_s"] = [
                    _median(
                        [s for r in results if r["variant"] == name and r["repeat"] == repeat
                         for b in r["blocks"] if b["threads"] == n and b["condition"] == condition
                         for s in b["steps_s"]]
                    )
                    for repeat in repeats
                ]  # fmt: skip
            row["busy_process_steps_per_s"] = [
                _rate(
                    [b for r in results if r["variant"] == name and r["repeat"] == repeat
                     for b in r["blocks"] if b["threads"] == n and b["condition"] == "beside"]
                )
                for repeat in repeats
            ]  # fmt: skip
            ratios = [
                b / a
                for a, b in zip(row["alone_median_s"], row["beside_median_s"], strict=True)
                if a and b
            ]
            row["ratio_beside_over_alone"] = [round(x, 2) for x in ratios]
            row["ratio_mean"] = round(statistics.fmean(ratios), 2) if ratios else None
            row["ratio_spread"] = round(max(ratios) - min(ratios), 2) if ratios else None
            if n == 1:
                ones = {c: row[f"{c}_median_s"] for c in CONDITIONS}
            if ones:
                row["over_t1"] = {
                    c: [round(a / b, 2) if a and b else None for a, b in zip(
                        row[f"{c}_median_s"], ones[c], strict=True)]
                    for c in CONDITIONS
                }  # fmt: skip
            out[f"{name}/t{n}"] = row
    return out


def physical_cores() -> int | None:
    """Distinct (package, core) pairs of /proc/cpuinfo; None where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores, package = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "physical id":
            package = value.strip()
        elif key.strip() == "core id":
            cores.add((package, value.strip()))
    return len(cores) or None


def drive(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    load_start, started = _load(), time.time()
    results: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        results += one_repeat(repeat, args)
    threads = [int(n) for n in args.threads.split(",")]
    return {
        "command": " ".join(["benchmarks/threads.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M", time.localtime(started)),
        "seconds": round(time.time() - started),
        "machine": {
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "os_cpu_count": os.cpu_count(),
            "physical_cores": physical_cores(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "torch_default_threads": torch.get_num_threads(),
            "torch_default_interop_threads": torch.get_num_interop_threads(),
            "parallel_backend": torch.__config__.parallel_info().splitlines()[-1].strip(),
        },
        "settings": {
            "threads": threads,
            "warmup": args.warmup,
            "block": args.block,
            "rounds": args.rounds,
            "repeats": args.repeats,
            "variants": {name: VARIANTS[name] for name in args.variants},
            "busy": {
                "what": "teacher training on make_medaka()",
                "threads": args.busy_threads or "torch's default",
                "env": _busy_env(args),
            },
        },
        "load_average": {"start": load_start, "end": _load()},
        "summary": summarise(results, args.variants, threads),
        "runs": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", choices=("measure", "busy"), help=argparse.SUPPRESS)
    parser.add_argument("--busy-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--interop", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", default="1,2", help="thread counts to compare (1,2)")
    parser.add_argument("--warmup", type=int, default=5, help="steps before timing (5)")
    parser.add_argument("--block", type=int, default=4, help="steps timed per block (4)")
    parser.add_argument("--rounds", type=int, default=6, help="blocks of each pair (6)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of every variant (2)")
    parser.add_argument("--busy-max-s", type=float, default=1800.0, help="busy time limit")
    parser.add_argument("--busy-threads", type=int, default=None, help="busy's threads")
    parser.add_argument("--busy-wait-policy", default=None, help="busy's OMP_WAIT_POLICY")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which (all)")
    parser.add_argument("--json", default=None, help="also save the JSON here")
    args = parser.parse_args()
    args.variants = [name.strip() for name in args.variants.split(",")]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}: choose from {list(VARIANTS)}")
    if args.worker == "measure":
        measure_worker(args)
    elif args.worker == "busy":
        busy_worker(args.busy_max_s, args.busy_threads)
    else:
        text = json.dumps(drive(args), indent=2)
        print(text)
        if args.json:
            Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
