"""Layers as the user meets them: the samples' layers, output names, labels opened as images."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Labels
from qtpy.QtCore import Qt

from napari_distill import _sample_data
from napari_distill._widgets.common import layers as layers_module
from napari_distill._widgets.common.handoff import MAX_NAME_LENGTH, output_name
from napari_distill._widgets.common.layers import IMAGE_AS_LABELS
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.preprocess import annotated_slices
from napari_distill.core.samples import make_medaka, make_pap_smear

PLUGIN = "napari-distill"
TIMEOUT_MS = 60_000
# The samples' own generators at a size that opens in a moment (same code, fewer voxels).
SMALL_SAMPLES = {
    "medaka_ct": ("make_medaka", lambda: make_medaka((16, 64, 32), n_annotated=4, seed=1)),
    "pap_smear": (
        "make_pap_smear",
        lambda: make_pap_smear(n_fields=3, field_shape=(96, 96), seed=0, n_annotated=1),
    ),
}
PAINTED = {"medaka_ct": "medaka painted", "pap_smear": "pap painted"}


@pytest.fixture
def small_samples(monkeypatch):
    for name, make in SMALL_SAMPLES.values():
        monkeypatch.setattr(_sample_data, name, make)


@pytest.fixture
def notes(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr("napari.utils.notifications.show_info", shown.append)
    return shown


def painted_slices(layer) -> np.ndarray:
    return annotated_slices(np.asarray(layer.data))


def current_slice(viewer, layer) -> int:
    return int(round(float(layer.world_to_data(viewer.dims.point)[0])))


@pytest.mark.parametrize("sample", sorted(SMALL_SAMPLES))
def test_a_sample_opens_with_its_painted_layer_selected_and_short_names(
    make_napari_viewer, small_samples, sample
):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, sample)
    painted = viewer.layers[PAINTED[sample]]
    assert viewer.layers.selection.active is painted  # the paint tools act on it
    assert painted.visible
    assert all(len(layer.name) <= MAX_NAME_LENGTH for layer in viewer.layers)
    hidden = [layer for layer in viewer.layers if not layer.visible]
    assert hidden and all("truth" in layer.name for layer in hidden)

    # the Teacher takes the painted layer (not the hidden truth) and shows a painted slice
    annotated = painted_slices(painted)
    unpainted = sorted(set(range(painted.data.shape[0])) - set(annotated.tolist()))
    viewer.dims.set_point(0, painted.data_to_world((unpainted[-1], 0, 0))[0])
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.labels_picker.layer() is painted
    assert current_slice(viewer, painted) == annotated[(annotated.size - 1) // 2]


def test_a_teacher_opened_before_the_sample_takes_the_painted_layer(
    make_napari_viewer, small_samples
):
    viewer = make_napari_viewer()
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    viewer.open_sample(PLUGIN, "medaka_ct")
    assert widget.image_picker.layer().name == "medaka CT"
    assert widget.labels_picker.layer().name == "medaka painted"  # the truth is hidden


def test_output_names_fit_the_layer_list():
    assert output_name("medaka CT", "teacher") == "medaka CT teacher"
    assert output_name("medaka CT", "student clean") == "medaka CT student clean"
    long = output_name("scan_2026-12-07_fish_03_whole_body", "teacher probs")
    assert len(long) == MAX_NAME_LENGTH and long.endswith("… teacher probs")
    assert long.startswith("scan_20")


def test_an_integer_image_of_the_right_shape_can_be_picked_as_labels(
    qtbot, make_napari_viewer, notes
):
    sample = make_medaka((16, 64, 32), n_annotated=4, seed=1)
    viewer = make_napari_viewer()
    viewer.add_image(sample.image.astype(np.float32), name="fish", scale=sample.scale)
    opened = viewer.add_image(sample.labels_sparse.astype(np.uint16), name="from fiji")
    viewer.add_image(sample.labels_sparse.astype(np.float32), name="float copy")
    viewer.add_image(sample.labels_sparse[:8].astype(np.uint16), name="too few slices")
    before = np.array(opened.data, copy=True)
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image_picker.select(viewer.layers["fish"])
    picker = widget.labels_picker
    texts = [picker.itemText(i) for i in range(picker.count())]
    assert texts == [IMAGE_AS_LABELS.format(name="from fiji")]  # not the float, nor the short
    assert picker.layer() is None  # an image is used as labels only when the user picks it

    picker.setCurrentIndex(0)
    assert picker.layer() is opened
    assert "4 of 16 slices annotated" in widget.summary.text()
    for key, value in {
        ("train", "steps"): 2,
        ("train", "patch_size"): 32,
        ("train", "batch_size"): 2,
        ("model", "base_channels"): 4,
        ("model", "depth"): 2,
    }.items():
        widget.settings.fields[key].setValue(value)
    qtbot.mouseClick(widget.panel.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.runner.is_running, timeout=TIMEOUT_MS)

    converted = viewer.layers["from fiji labels"]
    assert isinstance(converted, Labels) and picker.layer() is converted
    np.testing.assert_array_equal(converted.data, before)
    assert converted.data is not opened.data  # a copy: painting it leaves the image alone
    np.testing.assert_array_equal(opened.data, before)
    assert viewer.layers["from fiji"] is opened and opened.data.dtype == np.uint16
    assert len(notes) == 1 and "'from fiji labels'" in notes[0] and "unchanged" in notes[0]
    assert widget.run is not None and widget.run.step == 2


def test_a_layer_chosen_by_hand_stays_chosen(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((4, 8, 8), np.float32), name="image")
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="first")
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="second")
    picker = layers_module.LayerPicker(viewer, Labels)
    qtbot.addWidget(picker)
    assert picker.layer().name == "first"
    picker.setCurrentIndex(1)
    viewer.layers["first"].visible = False
    viewer.add_labels(np.zeros((4, 8, 8), np.uint8), name="third")
    assert picker.layer().name == "second"


def test_the_quality_and_student_labels_pickers_offer_integer_images_too(make_napari_viewer):
    from napari_distill._widgets.quality.widget import QualityWidget
    from napari_distill._widgets.student.widget import StudentWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(np.zeros((4, 16, 16), np.float32), name="fish")
    viewer.add_image(np.zeros((4, 16, 16), np.int32), name="from fiji")
    quality, student = QualityWidget(viewer), StudentWidget(viewer)
    for widget in (quality, student):
        viewer.window.add_dock_widget(widget)
    for picker in (quality.labels_picker, student.inputs.labels_picker):
        texts = [picker.itemText(i) for i in range(picker.count())]
        assert texts == [IMAGE_AS_LABELS.format(name="from fiji")], texts
    assert quality.image_picker.layer() is image and student.inputs.image_picker.layer() is image
