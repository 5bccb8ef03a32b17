"""Compute devices: choose CUDA, Apple MPS or the CPU, describe them, and size work to memory.

Only documented torch APIs are used, and every optional one is looked up with ``getattr`` so an
older torch (or a build without CUDA / MPS) degrades to a less precise answer instead of failing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass

import torch

logger = logging.getLogger(__name__)

_KINDS = ("cuda", "mps", "cpu")


class DeviceError(ValueError):
    """The requested device does not exist or is not available on this machine."""


@dataclass(frozen=True)
class DeviceInfo:
    """A device the user can choose.

    Attributes
    ----------
    name:
        What :func:`select_device` accepts, e.g. ``"cuda:0"``, ``"mps"``, ``"cpu"``.
    kind:
        ``"cuda"``, ``"mps"`` or ``"cpu"``.
    description:
        Human-readable, e.g. ``"NVIDIA RTX A5000 (24.0 GB)"``.
    memory_bytes:
        Total memory of the device (system RAM for the CPU and for MPS' unified memory),
        None when unknown.
    """

    name: str
    kind: str
    description: str
    memory_bytes: int | None


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(preference: str | torch.device = "auto") -> torch.device:
    """The torch device to compute on.

    Parameters
    ----------
    preference:
        ``"auto"`` (CUDA, then Apple MPS, then the CPU), or an explicit ``"cuda"``,
        ``"cuda:1"``, ``"mps"`` or ``"cpu"``.

    Raises
    ------
    DeviceError
        The requested device is unknown or not available here.
    """
    if isinstance(preference, torch.device):
        preference = str(preference)
    choice = preference.strip().lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(choice)
    except RuntimeError as error:
        raise DeviceError(
            f"unknown device {preference!r}: use 'auto', 'cuda', 'cuda:<index>', 'mps' or 'cpu'"
        ) from error
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device {preference!r} was requested but CUDA is not available (no NVIDIA GPU, "
                "or torch was installed without CUDA support); choose 'auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        index = 0 if device.index is None else device.index
        if index >= count:
            raise DeviceError(
                f"device {preference!r} was requested but only {count} CUDA device(s) exist "
                f"(cuda:0 .. cuda:{count - 1})"
            )
        return torch.device("cuda", index)
    if device.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"device {preference!r} was requested but Apple MPS is not available "
                "(needs an Apple-silicon Mac and a torch build with MPS); choose 'auto' or 'cpu'"
            )
        return torch.device("mps")
    raise DeviceError(
        f"device type {device.type!r} is not supported: use 'auto', 'cuda', 'mps' or 'cpu'"
    )


def _gigabytes(n_bytes: int | None) -> str:
    return "" if n_bytes is None else f" ({n_bytes / 1024**3:.1f} GB)"


def _meminfo_bytes(field_name: str) -> int | None:
    """A field of ``/proc/meminfo`` (Linux) in bytes, None where the file does not exist."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024  # the file reports kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def _sysconf_bytes(pages_name: str) -> int | None:
    try:
        return int(os.sysconf(pages_name)) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def system_memory_bytes() -> int | None:
    """Total system RAM in bytes, None when it cannot be found."""
    return _meminfo_bytes("MemTotal") or _sysconf_bytes("SC_PHYS_PAGES")


def system_available_bytes() -> int | None:
    """RAM available to a new allocation without swapping, None when it cannot be found."""
    # MemAvailable counts reclaimable caches; SC_AVPHYS_PAGES (free pages only) underestimates.
    return _meminfo_bytes("MemAvailable") or _sysconf_bytes("SC_AVPHYS_PAGES")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def cpu_count() -> int:
    """Cores this process may use (respects CPU affinity / container limits where known)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def available_devices() -> list[DeviceInfo]:
    """Every device torch can use here, GPUs first, the CPU last."""
    devices: list[DeviceInfo] = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            memory = int(props.total_memory)
            devices.append(
                DeviceInfo(f"cuda:{index}", "cuda", f"{props.name}{_gigabytes(memory)}", memory)
            )
    if _mps_available():
        memory = system_memory_bytes()  # unified memory: the GPU shares system RAM
        devices.append(DeviceInfo("mps", "mps", f"Apple MPS{_gigabytes(memory)}", memory))
    memory = system_memory_bytes()
    cores = cpu_count()
    devices.append(
        DeviceInfo(
            "cpu",
            "cpu",
            f"{_cpu_name()}, {cores} core{'s' if cores > 1 else ''}{_gigabytes(memory)}",
            memory,
        )
    )
    return devices


def free_memory_bytes(device: torch.device | str) -> int:
    """Memory that a new allocation on ``device`` can use now, in bytes.

    CUDA reports its own free memory; MPS the recommended working set minus what torch holds
    (falls back to free system RAM); the CPU the available RAM. When nothing is known, a
    conservative 1 GiB is returned so callers still size their tiles.
    """
    device = torch.device(device)
    fallback = 1024**3
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "mps":
        mps = getattr(torch, "mps", None)
        recommended = getattr(mps, "recommended_max_memory", None)
        allocated = getattr(mps, "current_allocated_memory", None)
        if recommended is not None and allocated is not None:
            try:
                return max(0, int(recommended()) - int(allocated()))
            except RuntimeError:
                logger.debug("torch.mps memory query failed; using free system RAM")
        return system_available_bytes() or fallback
    return system_available_bytes() or fallback


def auto_cpu_threads(cores: int, torch_default: int | None = None) -> int:
    """The CPU thread count ``"auto"`` stands for: every core but one, no more than
    ``torch_default`` (torch's own choice, on most builds its count of physical cores), and at
    least one. Pure: ``cores`` is :func:`cpu_count` where :func:`set_cpu_threads` applies it.

    Why (``benchmarks/threads.py``, docs/benchmarks.md "CPU threads", 2026-12-07, 2 cores):
    torch's threads meet at the end of every operation, and OpenMP lets the first to arrive
    spin, burning the core the others need; with any other work on the cores, 2 threads took
    1.6-1.7 times as long per teacher step as 1 beside one other training, and 4-9 times as long
    on a loaded machine, while alone they took 0.6-0.7 of 1 thread's time. A thread count that
    leaves a core free never spins against its neighbours (a GUI, another job).
    """
    usable = max(1, cores - 1)
    if torch_default is not None and torch_default >= 1:
        usable = min(usable, torch_default)
    return usable


def parse_cpu_threads(value: str | int | None) -> int | None:
    """``"auto"`` (or None) -> None; a whole number >= 1 (or its text) -> that number.

    Raises
    ------
    ValueError
        Anything else, in one line that names what is accepted.
    """
    if value is None:
        return None
    threads = 0  # refused below
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return None
        if text.isdecimal():
            threads = int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        threads = value
    if threads < 1:
        raise ValueError(f"CPU threads must be 'auto' or a whole number >= 1, got {value!r}")
    return threads


# torch's own choice, read before anything here changes it (the upper bound of "auto").
_TORCH_DEFAULT_THREADS = torch.get_num_threads()


def set_cpu_threads(threads: int | str | None = None) -> int:
    """Set the CPU threads torch computes with (``torch.set_num_threads``); returns the count.

    The one place the CLI and the widgets set them. ``None`` or ``"auto"``: see
    :func:`auto_cpu_threads`; a number >= 1 is taken as given.

    Raises
    ------
    ValueError
        ``threads`` is not ``"auto"``, None or a whole number >= 1.
    """
    requested = parse_cpu_threads(threads)
    count = (
        auto_cpu_threads(cpu_count(), _TORCH_DEFAULT_THREADS) if requested is None else requested
    )
    if count != torch.get_num_threads():
        torch.set_num_threads(count)
    return count


@contextlib.contextmanager
def cpu_threads(threads: int | str | None = None) -> Iterator[int]:
    """:func:`set_cpu_threads` for a ``with`` block, torch's previous count restored after (a
    command run inside a longer-lived process, such as a test, leaves it as it was)."""
    before = torch.get_num_threads()
    try:
        yield set_cpu_threads(threads)
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The mixed-precision dtype for ``device``: bf16 where CUDA supports it, else fp16;
    fp16 on MPS; None on the CPU (CPU autocast is slower than float32 for these networks)."""
    device = torch.device(device)
    if device.type == "cuda":
        supported = getattr(torch.cuda, "is_bf16_supported", None)
        return torch.bfloat16 if supported is not None and supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return None


def device_text(device: torch.device) -> str:
    """``"cpu (1 thread)"``, ``"cuda:0 (its name)"`` or the device: for logs and reports."""
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'' if threads == 1 else 's'})"
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
