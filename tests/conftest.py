"""Shared test settings: CPU only, two threads, seeded."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU path is what CI can check

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module of tiny networks: on a busy machine two threads spend
    their time waiting for each other at every operation (20 steps: 40 s instead of 2 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
