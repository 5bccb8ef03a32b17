"""Checkpoints: round trip, atomic save, and refusal of foreign, corrupt or unsafe files."""

from __future__ import annotations

import os
import pickle
from dataclasses import replace

import pytest
import torch

from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.models import (
    CheckpointError,
    ModelBundle,
    build_model,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from napari_distill.core.preprocess import Normalization

torch.set_num_threads(2)


@pytest.fixture
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    config = ModelConfig(in_channels=1, num_classes=3, base_channels=8, depth=3)
    return ModelBundle(
        model=build_model(config),
        model_config=config,
        class_ids=(0, 1, 5),
        class_names={0: "background", 1: "eye", 5: "heart"},
        normalization=Normalization((10.0,), (200.0,)),
        step=17,
        kind="teacher",
        train_config=TrainConfig(steps=30, patch_size=32),
        extra={"note": "tiny", "slices": [1, 2], "score": 0.5},
    )


def test_round_trip_gives_the_same_model_and_metadata(tmp_path, bundle):
    optimizer = torch.optim.AdamW(bundle.model.parameters())
    bundle.model(torch.randn(1, 1, 16, 16)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "teacher.pt", bundle, optimizer.state_dict())

    loaded, raw = load_checkpoint(path)
    x = torch.randn(2, 1, 29, 31)
    bundle.model.eval()
    with torch.no_grad():
        assert torch.allclose(bundle.model(x), loaded.model(x))
    assert not loaded.model.training
    assert loaded.model_config == bundle.model_config
    assert loaded.class_ids == (0, 1, 5)
    assert loaded.class_names == {0: "background", 1: "eye", 5: "heart"}
    assert loaded.normalization == bundle.normalization
    assert loaded.step == 17 and loaded.kind == "teacher"
    assert loaded.train_config == bundle.train_config
    assert loaded.extra == bundle.extra
    assert raw["format"] == "napari-distill" and raw["format_version"] == 1
    restored = torch.optim.AdamW(loaded.model.parameters())
    restored.load_state_dict(raw["optimizer_state"])


def test_a_checkpoint_from_before_deep_supervision_still_loads(tmp_path, bundle):
    old_config = ModelConfig(in_channels=1, num_classes=3, base_channels=8, depth=3,
                             deep_supervision=False)  # fmt: skip
    old_model = build_model(old_config)
    path = save_checkpoint(tmp_path / "old.pt", replace(bundle, model=old_model,
                                                        model_config=old_config))  # fmt: skip
    raw = torch.load(path, weights_only=True)
    del raw["model_config"]["deep_supervision"]  # written before the option existed
    torch.save(raw, path)

    loaded, _ = load_checkpoint(path)
    assert loaded.model_config.deep_supervision is False
    x = torch.randn(1, 1, 16, 16)
    old_model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), old_model(x))


def test_kind_is_checked(tmp_path, bundle):
    path = save_checkpoint(tmp_path / "teacher.pt", bundle)
    with pytest.raises(CheckpointError, match="'teacher' model"):
        load_checkpoint(path, kind="student")


def test_non_plain_extra_values_are_refused_before_writing(tmp_path, bundle):
    bundle.extra["bad"] = object()
    with pytest.raises(TypeError, match="extra"):
        save_checkpoint(tmp_path / "x.pt", bundle)
    assert list(tmp_path.iterdir()) == []


def test_failed_save_keeps_the_old_file_and_leaves_no_temp(tmp_path, bundle, monkeypatch):
    path = save_checkpoint(tmp_path / "teacher.pt", bundle)
    before = path.read_bytes()

    def half_then_fail(obj, handle, *args, **kwargs):
        handle.write(before[: len(before) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_then_fail)
    bundle.step = 99
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, bundle)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["teacher.pt"]
    monkeypatch.undo()
    assert load_checkpoint(path)[0].step == 17


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_corrupt_file(tmp_path, bundle):
    path = save_checkpoint(tmp_path / "teacher.pt", bundle)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="teacher.pt"):
        load_checkpoint(path)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(256))
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_checkpoint(garbage)
    text = tmp_path / "notes.pt"  # not a pickle at all: torch fails inside its unpickler
    text.write_text("hello, not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.pt is not a readable checkpoint"):
        load_checkpoint(text)


def test_foreign_torch_files(tmp_path, bundle):
    plain = tmp_path / "state_dict.pt"
    torch.save(bundle.model.state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a napari-distill checkpoint"):
        load_checkpoint(plain)
    other = tmp_path / "other_tool.pt"
    torch.save({"epoch": 3, "model": bundle.model.state_dict()}, other)
    with pytest.raises(CheckpointError, match="other_tool.pt"):
        load_checkpoint(other)


def test_newer_format_version_is_refused(tmp_path, bundle):
    path = save_checkpoint(tmp_path / "teacher.pt", bundle)
    raw = read_checkpoint(path)
    raw["format_version"] = 99
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="update napari-distill"):
        load_checkpoint(path)


class _Exploit:
    """Unpickling this would create a file: the marker of code having run."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    for name, payload in [
        ("exploit.pt", {"format": "napari-distill", "x": _Exploit(str(marker))}),
        ("exploit_raw.pkl", _Exploit(str(marker))),
    ]:
        path = tmp_path / name
        if name.endswith(".pt"):
            torch.save(payload, path)
        else:
            path.write_bytes(pickle.dumps(payload, protocol=2))
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(path)
        assert not marker.exists()
