"""Device selection and description; CUDA and MPS are simulated, so this runs on any machine."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from napari_distill.core import device as device_module
from napari_distill.core.device import (
    DeviceError,
    DeviceInfo,
    auto_cpu_threads,
    autocast_dtype,
    available_devices,
    cpu_threads,
    free_memory_bytes,
    parse_cpu_threads,
    select_device,
    set_cpu_threads,
)


@pytest.fixture
def fake_hardware(monkeypatch):
    """Pretend to have ``cuda`` GPUs and/or MPS, as the test sets it."""
    state = {"cuda": 0, "mps": False, "bf16": True}

    monkeypatch.setattr(torch.cuda, "is_available", lambda: state["cuda"] > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: state["cuda"])
    monkeypatch.setattr(
        torch.cuda,
        "get_device_properties",
        lambda index: SimpleNamespace(name=f"Fake GPU {index}", total_memory=8 * 1024**3),
    )
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (3 * 1024**3, 8 * 1024**3))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: state["bf16"])
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: state["mps"])
    return state


def test_auto_prefers_cuda_then_mps_then_cpu(fake_hardware):
    assert select_device("auto") == torch.device("cpu")
    fake_hardware["mps"] = True
    assert select_device("auto") == torch.device("mps")
    fake_hardware["cuda"] = 2
    assert select_device() == torch.device("cuda", 0)


def test_explicit_devices(fake_hardware):
    fake_hardware["cuda"] = 2
    fake_hardware["mps"] = True
    assert select_device("cuda") == torch.device("cuda", 0)
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert select_device(" MPS ") == torch.device("mps")
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")) == torch.device("cpu")


def test_unavailable_or_unknown_devices_raise_clearly(fake_hardware):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        select_device("cuda")
    with pytest.raises(DeviceError, match="MPS is not available"):
        select_device("mps")
    fake_hardware["cuda"] = 1
    with pytest.raises(DeviceError, match="only 1 CUDA device"):
        select_device("cuda:3")
    with pytest.raises(DeviceError, match="unknown device"):
        select_device("gpu please")
    assert issubclass(DeviceError, ValueError)


def test_available_devices_lists_gpus_first_and_cpu_last(fake_hardware):
    fake_hardware["cuda"] = 2
    fake_hardware["mps"] = True
    devices = available_devices()
    assert [d.name for d in devices] == ["cuda:0", "cuda:1", "mps", "cpu"]
    assert devices[0].kind == "cuda"
    assert devices[0].memory_bytes == 8 * 1024**3
    assert "Fake GPU 0" in devices[0].description and "8.0 GB" in devices[0].description
    assert devices[2].description.startswith("Apple MPS")
    assert all(isinstance(d, DeviceInfo) for d in devices)


def test_cpu_only_machine_describes_the_cpu(fake_hardware):
    (cpu,) = available_devices()
    assert cpu.kind == "cpu" and cpu.name == "cpu"
    assert "core" in cpu.description
    assert cpu.memory_bytes is None or cpu.memory_bytes > 0


def test_free_memory(fake_hardware, monkeypatch):
    assert free_memory_bytes("cpu") > 0
    assert free_memory_bytes(torch.device("cuda", 0)) == 3 * 1024**3
    monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 10_000, raising=False)
    monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: 4_000, raising=False)
    assert free_memory_bytes("mps") == 6_000


def test_free_cpu_memory_falls_back_without_proc(monkeypatch):
    monkeypatch.setattr(device_module, "_meminfo_bytes", lambda field_name: None)
    assert free_memory_bytes("cpu") > 0


def test_autocast_dtype(fake_hardware):
    assert autocast_dtype("cpu") is None
    assert autocast_dtype("mps") == torch.float16
    assert autocast_dtype("cuda:0") == torch.bfloat16
    fake_hardware["bf16"] = False
    assert autocast_dtype("cuda") == torch.float16


def test_widgets_threads_go_through_the_core_rule(monkeypatch):
    from napari_distill._widgets.common.device import use_cpu_threads

    before = torch.get_num_threads()
    monkeypatch.setattr(device_module, "cpu_count", lambda: 8)
    monkeypatch.setattr(device_module, "_TORCH_DEFAULT_THREADS", 8)
    try:
        assert use_cpu_threads() == 7
        assert torch.get_num_threads() == 7
        assert use_cpu_threads(3) == 3
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("cores", "torch_default", "expected"),
    [
        (1, 1, 1),  # one core: one thread, never zero
        (2, 2, 1),  # the 2-core machine of docs/benchmarks.md "CPU threads"
        (4, 4, 3),
        (8, 4, 4),  # 4 physical cores with two hardware threads each: one thread per core
        (16, 8, 8),
        (16, 16, 15),
        (16, None, 15),  # torch's default unknown: cores alone decide
    ],
)
def test_auto_cpu_threads_leaves_a_core_and_stays_within_torchs_default(
    cores, torch_default, expected
):
    assert auto_cpu_threads(cores, torch_default) == expected


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("auto", None), (" AUTO ", None)])
def test_parse_cpu_threads_reads_auto_as_none(value, expected):
    assert parse_cpu_threads(value) is expected


@pytest.mark.parametrize(("value", "expected"), [("1", 1), ("3", 3), (" 2 ", 2), (4, 4)])
def test_parse_cpu_threads_reads_whole_numbers(value, expected):
    assert parse_cpu_threads(value) == expected


@pytest.mark.parametrize("value", ["0", 0, "-1", -2, "1.5", 1.5, "two", "", True])
def test_parse_cpu_threads_refuses_anything_else_in_one_line(value):
    with pytest.raises(ValueError, match="'auto' or a whole number >= 1") as caught:
        parse_cpu_threads(value)
    assert "\n" not in str(caught.value)


@pytest.fixture
def torch_threads_restored():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_set_cpu_threads_applies_a_count_or_the_auto_rule(monkeypatch, torch_threads_restored):
    assert set_cpu_threads(3) == 3
    assert torch.get_num_threads() == 3
    monkeypatch.setattr(device_module, "cpu_count", lambda: 4)
    monkeypatch.setattr(device_module, "_TORCH_DEFAULT_THREADS", 8)
    assert set_cpu_threads(None) == 3
    assert set_cpu_threads("auto") == 3
    assert torch.get_num_threads() == 3
    monkeypatch.setattr(device_module, "_TORCH_DEFAULT_THREADS", 2)
    assert set_cpu_threads() == 2
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        set_cpu_threads(0)
    assert torch.get_num_threads() == 2  # a refused count changes nothing


def test_cpu_threads_restores_the_previous_count(torch_threads_restored):
    torch.set_num_threads(2)
    with cpu_threads(1) as count:
        assert count == 1
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError), cpu_threads(3):
        raise RuntimeError("a command that fails")
    assert torch.get_num_threads() == 2
