"""Many images in one viewer (issue 26), driven as a user would: two image layers (one
painted) -> the Teacher trains one teacher and predicts both -> the Quality review ranks the
slices of both and jumps between them -> the Student trains on both and predicts both.
Real viewer, real workers, tiny volumes."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt

from napari_distill._widgets.common import image_set as image_set_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import handoff, teacher_prediction_layers
from napari_distill._widgets.common.project_layers import LABELS_LAYER_KEY
from napari_distill._widgets.teacher import project as teacher_project
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.samples import make_medaka

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def fish():
    """Two fish of one kind (different seeds); the first has painted slices."""
    return [make_medaka((10, 48, 32), n_annotated=3, seed=seed) for seed in (1, 2)]


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    for module in (teacher_project, workers, image_set_module):
        monkeypatch.setattr(module, "show_error", shown.append, raising=False)
    monkeypatch.setattr("napari.utils.notifications.show_error", shown.append)
    return shown


@pytest.fixture
def viewer(make_napari_viewer, fish):
    viewer = make_napari_viewer()
    for name, sample in zip(("fish_a", "fish_b"), fish, strict=True):
        viewer.add_image(sample.image, name=name, scale=sample.scale)
    viewer.add_labels(fish[0].labels_sparse, name="fish_a labels", scale=fish[0].scale)
    return viewer


def small(settings, steps: int) -> None:
    """Settings that train in seconds on 2 CPU cores."""
    fields = settings.fields
    for key, value in {
        ("train", "steps"): steps,
        ("train", "patch_size"): 32,
        ("train", "batch_size"): 2,
        ("train", "validate_every"): 5,
        ("model", "base_channels"): 4,
        ("model", "depth"): 2,
    }.items():
        if key in fields:
            fields[key].setValue(value)


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def wait_idle(qtbot, runner) -> None:
    qtbot.waitUntil(lambda: not runner.is_running, timeout=TIMEOUT_MS)


def teacher_dock(viewer) -> TeacherWidget:
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget.settings, steps=10)
    widget.image_set.setChecked(True)
    return widget


def test_the_teacher_trains_on_two_images_and_predicts_each(qtbot, viewer, fish, errors):
    widget = teacher_dock(viewer)
    texts = [widget.image_set.list.item(i).text() for i in range(widget.image_set.list.count())]
    assert texts == [
        f"fish_a + fish_a labels: {len(fish[0].annotated)} painted slice(s)",
        "fish_b: no labels (pseudo-labelled)",
    ]
    assert "2 image(s) ticked, 1 with painted slices" in widget.image_set.summary.text()

    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget.runner)
    assert errors == []
    assert widget.bundle is not None and widget.run.step == 10
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget.runner)
    assert errors == []
    layers = teacher_prediction_layers(viewer)
    assert [layer.name for layer in layers] == ["fish_a teacher", "fish_b teacher"]
    for layer, image, labels in zip(layers, ("fish_a", "fish_b"), ("fish_a labels", None)):
        shared = handoff(layer)
        assert shared["image_layer"] == image and shared[LABELS_LAYER_KEY] == labels
        assert shared["bundle"] is widget.bundle
        assert layer.data.shape == viewer.layers[image].data.shape
    assert {"fish_a", "fish_b", "fish_a labels"} <= {layer.name for layer in viewer.layers}
