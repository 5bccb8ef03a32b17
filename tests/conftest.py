"""Shared test settings: CPU only, two threads, seeded."""

import os

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU path is what CI can check

import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
