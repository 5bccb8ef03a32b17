"""Keep freed memory for reuse while a CPU computation runs (glibc only).

A U-Net on the CPU allocates and frees activations of tens of megabytes at every layer. glibc
serves blocks that large with fresh ``mmap`` calls and returns them to the system on ``free``,
so every layer of every forward pass page-faults its memory in again: on this project's 2-core
machines the kernel spent about 40 % of the prediction time doing so. Asking glibc to serve
them from its heap and to keep what is freed (``mallopt``) removes that cost; the price is that
the process's resident memory stays at its peak while the setting is on.

:func:`retained_freed_memory` turns the setting on for the duration of a ``with`` block (nested
and concurrent blocks are counted; the last one out restores glibc's defaults and hands the
kept memory back to the system with ``malloc_trim``). Elsewhere (macOS, Windows, musl) it does
nothing.
``benchmarks/speed.py`` measures the gain (``retained_memory_speedup``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import platform
import threading
from collections.abc import Iterator

logger = logging.getLogger(__name__)

# mallopt parameters and glibc's defaults (malloc.h, mallopt(3)).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_DEFAULT_TRIM_THRESHOLD = 128 * 1024
_DEFAULT_MMAP_MAX = 65536
_RETAINED_TRIM_THRESHOLD = 2**31 - 1  # never give the heap's top back while on

_lock = threading.Lock()
_users = 0


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (with ``mallopt`` and ``malloc_trim``), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    libc.mallopt.restype = libc.malloc_trim.restype = ctypes.c_int
    return libc


def _apply(retain: bool) -> bool:
    libc = _glibc()
    if libc is None:
        return False
    mmap_max = 0 if retain else _DEFAULT_MMAP_MAX
    trim = _RETAINED_TRIM_THRESHOLD if retain else _DEFAULT_TRIM_THRESHOLD
    done = bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
    if not retain:
        libc.malloc_trim(0)  # give back now what was kept, not at some later free()
    logger.debug("glibc keeps freed memory: %s (mallopt %s)", retain, "ok" if done else "failed")
    return done


def retention_supported() -> bool:
    """Whether :func:`retained_freed_memory` can change anything on this system."""
    return _glibc() is not None


@contextlib.contextmanager
def retained_freed_memory() -> Iterator[bool]:
    """While inside, large blocks come from the heap and freed memory is kept for reuse.

    Yields whether the setting is in effect (False where the C library is not glibc).
    """
    global _users
    with _lock:
        _users += 1
        active = _apply(True) if _users == 1 else retention_supported()
    try:
        yield active
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                _apply(False)
