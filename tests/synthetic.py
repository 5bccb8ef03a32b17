"""Tiny synthetic stacks for fast training tests (importable: ``pythonpath = ["tests"]``)."""

from __future__ import annotations

import numpy as np


def disk_square_volume(
    n: int = 8, size: int = 48, seed: int = 0, noise: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy float32 stack with a bright disk (class 1) and a dimmer square (class 2) per
    slice, at seeded random places and sizes, and its uint8 labels."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    image = rng.normal(100.0, noise, (n, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = rng.integers(12, size - 12, 2)
        disk = (rows - cy) ** 2 + (cols - cx) ** 2 < rng.integers(5, 9) ** 2
        r0, c0 = rng.integers(2, size - 14, 2)
        square = np.zeros_like(disk)
        square[r0 : r0 + 10, c0 : c0 + 10] = True
        square &= ~disk
        labels[i][disk], labels[i][square] = 1, 2
        image[i][disk] += 120.0
        image[i][square] += 60.0
    return image, labels


def fixed_disk_square_volume(
    n: int = 8, size: int = 32, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Bright disks (class 1, drifting by slice) and a fixed dim square (class 2) on a dark,
    noisy background: easy enough that a few training steps learn it."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    image = rng.normal(10.0, 2.0, (n, size, size)).astype(np.float32)
    truth = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        truth[i][(rows - 10 - i % 3) ** 2 + (cols - 12) ** 2 < 36] = 1
        truth[i][(rows > 20) & (rows < 28) & (cols > 18) & (cols < 28)] = 2
    image += 40.0 * (truth == 1) + 20.0 * (truth == 2)
    return image, truth
