"""core.allocator: glibc keeps freed memory inside the block, and only there."""

from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest

from napari_distill.core import allocator
from napari_distill.core.allocator import retained_freed_memory, retention_supported

BIG = 64 * 2**20  # bytes: far above glibc's mmap threshold


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


def _mmapped_bytes() -> int:
    """Bytes glibc currently serves with mmap (mallinfo2's hblkhd)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblkhd)


def _mmapped_while_holding_a_big_array() -> int:
    before = _mmapped_bytes()
    block = np.ones(BIG, dtype=np.uint8)
    during = _mmapped_bytes()
    del block
    return during - before


@pytest.mark.skipif(not retention_supported(), reason="glibc only")
def test_large_blocks_come_from_the_heap_only_inside_the_block():
    assert _mmapped_while_holding_a_big_array() >= BIG  # glibc's default: a fresh mmap
    with retained_freed_memory() as active:
        assert active
        assert _mmapped_while_holding_a_big_array() < BIG
    assert _mmapped_while_holding_a_big_array() >= BIG  # defaults are back


def test_nested_and_concurrent_blocks_restore_once_at_the_end(monkeypatch):
    calls: list[bool] = []
    monkeypatch.setattr(allocator, "_apply", lambda retain: calls.append(retain) or True)
    monkeypatch.setattr(allocator, "_users", 0)
    inside = threading.Barrier(2)

    def worker() -> None:
        with retained_freed_memory():
            inside.wait()
            inside.wait()

    thread = threading.Thread(target=worker)
    thread.start()
    with retained_freed_memory():
        inside.wait()  # both blocks are open
        with retained_freed_memory():
            pass
        inside.wait()
        thread.join()
        assert calls == [True]  # still on: this block is open
    assert calls == [True, False]
