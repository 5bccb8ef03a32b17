"""Many images in one viewer (issue 26), driven as a user would: two image layers (one
painted) -> the Teacher trains one teacher and predicts both -> the Quality review ranks the
slices of both and jumps between them -> the Student trains on both and predicts both.
Real viewer, real workers, tiny volumes."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from napari.layers import Labels
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog

from napari_distill._widgets.common import image_set as image_set_module
from napari_distill._widgets.common import workers
from napari_distill._widgets.common.handoff import handoff, teacher_prediction_layers
from napari_distill._widgets.common.image_set import open_volume_folder
from napari_distill._widgets.common.project_layers import LABELS_LAYER_KEY
from napari_distill._widgets.quality import project_review
from napari_distill._widgets.quality.review_tab import SELECTION_KEY
from napari_distill._widgets.quality.widget import QualityWidget
from napari_distill._widgets.student import project as student_project
from napari_distill._widgets.student.widget import StudentWidget
from napari_distill._widgets.teacher import project as teacher_project
from napari_distill._widgets.teacher.widget import TeacherWidget
from napari_distill.core.io import ReadError
from napari_distill.core.project import VIEWS_UNAVAILABLE
from napari_distill.core.samples import make_medaka

TIMEOUT_MS = 120_000


@pytest.fixture(scope="module")
def fish():
    """Two fish of one kind (different seeds); the first has painted slices."""
    return [make_medaka((10, 48, 32), n_annotated=3, seed=seed) for seed in (1, 2)]


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    for module in (teacher_project, student_project, workers, image_set_module, project_review):
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
    for layer, image, labels in zip(
        layers, ("fish_a", "fish_b"), ("fish_a labels", None), strict=True
    ):
        shared = handoff(layer)
        assert shared["image_layer"] == image and shared[LABELS_LAYER_KEY] == labels
        assert shared["bundle"] is widget.bundle
        assert layer.data.shape == viewer.layers[image].data.shape
    assert {"fish_a", "fish_b", "fish_a labels"} <= {layer.name for layer in viewer.layers}


def test_a_stopped_run_on_two_images_resumes_finishes_and_predicts_each(
    qtbot, viewer, monkeypatch, tmp_path, errors
):
    widget = teacher_dock(viewer)
    small(widget.settings, steps=40)
    click(qtbot, widget.panel.train_button)
    qtbot.waitUntil(lambda: widget.run is not None and widget.run.step >= 2, timeout=TIMEOUT_MS)
    click(qtbot, widget.panel.stop_button)
    wait_idle(qtbot, widget.runner)
    run, stopped_at = widget.run, widget.run.step
    assert errors == [] and stopped_at < 40
    assert "Training stopped" in widget.panel.status_label.text()
    path = tmp_path / "stopped.pt"  # the stopped run, for a resume from its file below
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.save_button)

    click(qtbot, widget.panel.resume_button)  # the same run goes on, on the same stack
    wait_idle(qtbot, widget.runner)
    assert errors == []
    assert widget.run is run and run.step == 40 and run.stop_reason == "completed"
    assert "Training finished at step 40 of 40" in widget.panel.status_label.text()
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget.runner)
    assert errors == []
    layers = teacher_prediction_layers(viewer)
    assert [layer.name for layer in layers] == ["fish_a teacher", "fish_b teacher"]
    assert all(handoff(layer)["bundle"] is widget.bundle for layer in layers)

    # the stopped run's file, loaded into the dock, resumes on a new stack of the same images
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.load_button)
    assert widget.run is None and widget.bundle.step == stopped_at
    click(qtbot, widget.panel.resume_button)
    qtbot.waitUntil(lambda: widget.run is not None, timeout=TIMEOUT_MS)
    resumed = widget.run
    wait_idle(qtbot, widget.runner)
    assert errors == []
    assert resumed is not run and resumed.step == 40 and resumed.stop_reason == "completed"


def test_views_are_greyed_out_for_several_images_saying_why(
    qtbot, viewer, monkeypatch, tmp_path, errors
):
    widget = TeacherWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget.settings, steps=4)
    views = widget.settings.switches[("model", "views")]
    members = widget.settings.fields[("model", "members")]
    views.click()  # the user asks for views: three teachers
    assert views.isChecked() and members.value() == 3

    widget.image_set.setChecked(True)
    assert not views.isEnabled() and not views.isChecked() and members.value() == 1
    assert views.toolTip() == f"Not used for several images: {VIEWS_UNAVAILABLE}."
    assert "Views are off" in widget.image_set.summary.text()
    qtbot.waitUntil(lambda: widget.plan_line.plan is not None, timeout=10_000)
    decision = widget.plan_line.plan.decision("views")
    assert decision.value is False and decision.reason == VIEWS_UNAVAILABLE
    assert "views off" in widget.plan_line.text()
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget.runner)
    assert errors == []
    config = widget.bundle.model_config
    assert (config.views, config.members) == (False, 1)  # one network, along the slices

    widget.image_set.setChecked(False)  # one image again: the user's views come back
    assert views.isEnabled() and views.isChecked() and members.value() == 3

    # a views teacher trained on one image, saved, loaded: not resumed on several images
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget.runner)
    assert errors == [] and widget.bundle.model_config.views
    path = tmp_path / "views.pt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.save_button)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    click(qtbot, widget.load_button)
    widget.image_set.setChecked(True)
    click(qtbot, widget.panel.resume_button)
    assert not widget.runner.is_running and widget.run is None
    assert (
        len(errors) == 1 and "This teacher has Views, which resume on one image only" in errors[0]
    )


@pytest.fixture
def predicted(qtbot, viewer, errors):
    """The viewer after the Teacher trained on both fish and predicted both."""
    widget = teacher_dock(viewer)
    click(qtbot, widget.panel.train_button)
    wait_idle(qtbot, widget.runner)
    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget.runner)
    assert errors == [] and len(teacher_prediction_layers(viewer)) == 2
    return viewer


def shown_slice(viewer, name: str) -> int:
    layer = viewer.layers[name]
    return int(round(float(layer.world_to_data(viewer.dims.point)[0])))


def score_all(qtbot, viewer) -> QualityWidget:
    """Fit and score every image in the Quality review's All images tab."""
    widget = QualityWidget(viewer)
    viewer.window.add_dock_widget(widget)
    for name, value in {"steps": 4, "variants_per_slice": 1, "input_size": 32}.items():
        widget.fitting.settings.fields[name].setValue(value)
    panel = widget.project_review
    widget.tabs.setCurrentWidget(panel)
    assert "2 image(s) predicted by this teacher" in panel.images_label.text()
    click(qtbot, panel.score_button)
    wait_idle(qtbot, panel.runner)
    return widget


def test_the_quality_review_ranks_the_slices_of_both_images(qtbot, predicted, fish, errors):
    viewer = predicted
    widget = score_all(qtbot, viewer)
    panel = widget.project_review
    assert errors == []
    assert widget.fitting.quality is not None  # the Fit tab shows the classifier fitted here

    rows = [(panel.table.item(r, 0).text(), int(panel.table.item(r, 1).text()))
            for r in range(panel.table.rowCount())]  # fmt: skip
    assert len(rows) == 2 * 10  # every slice of both fish
    assert {name for name, _ in rows} == {"fish_a", "fish_b"}
    painted = {("fish_a", int(i)) for i in fish[0].annotated}
    unpainted = [row for row in rows if row not in painted]
    assert rows[: len(unpainted)] == unpainted  # ranked first, across both images
    ranked = panel.selection.worst_first(panel.ranking())
    assert unpainted == ranked

    # each image's selection is published on its teacher layer, for the Student
    for layer in teacher_prediction_layers(viewer):
        assert handoff(layer)[SELECTION_KEY] is panel.selection[handoff(layer)["image_layer"]]

    for target in ("fish_b", "fish_a"):  # jumping to a row shows that image on that slice
        row = next(r for r, (name, _) in enumerate(rows) if name == target and r > 0)
        panel.table.setCurrentCell(row, 0)
        other = "fish_a" if target == "fish_b" else "fish_b"
        assert viewer.layers[target].visible and viewer.layers[f"{target} teacher"].visible
        assert not viewer.layers[other].visible
        assert not viewer.layers[f"{other} teacher"].visible
        assert viewer.layers.selection.active is viewer.layers[f"{target} teacher"]
        assert shown_slice(viewer, target) == rows[row][1]

    # a decision by hand on a row of the second image reaches that image's selection
    row = next(r for r, (name, index) in enumerate(rows) if (name, index) not in painted)
    panel.table.setCurrentCell(row, 0)
    click(qtbot, panel.buttons["reject"])
    name, index = rows[row]
    assert index not in panel.selection[name].accepted
    assert panel.table.item(row, 4).text() == "rejected (by hand)"


def test_the_student_trains_on_both_images_and_predicts_each(qtbot, predicted, errors):
    viewer = predicted
    review = score_all(qtbot, viewer).project_review
    review.set_tau(0.0)  # accept every scored slice: both fish bring pseudo-labels
    accepted = review.selection.accepted()
    assert accepted["fish_b"] and accepted["fish_a"]

    widget = StudentWidget(viewer)
    viewer.window.add_dock_widget(widget)
    small(widget.settings, steps=6)
    assert widget.inputs.teacher_layer() is not None
    widget.project.setChecked(True)
    assert widget.inputs.summary.isHidden()  # its one-image count gives way to every image's
    text = widget.project.summary.text()
    assert (
        "2 image(s)" in text and f"'fish_b': 0 painted + {len(accepted['fish_b'])} accepted" in text
    )

    seen = {}
    real = student_project.project_student_training

    def spy(strategy, teacher, images, pseudo, chosen, work, **kwargs):
        seen.update(images=[i.name for i in images], accepted=dict(chosen))
        return (yield from real(strategy, teacher, images, pseudo, chosen, work, **kwargs))

    student_project.project_student_training = spy
    try:
        click(qtbot, widget.panel.train_button)
        wait_idle(qtbot, widget.runner)
    finally:
        student_project.project_student_training = real
    assert errors == []
    assert seen["images"] == ["fish_a", "fish_b"]
    assert seen["accepted"]["fish_b"] == accepted["fish_b"]
    assert widget.bundle is not None and widget.run.step == 6

    click(qtbot, widget.predict_button)
    wait_idle(qtbot, widget.runner)
    assert errors == []
    students = [layer for layer in viewer.layers if layer.name.endswith(" student")]
    assert [layer.name for layer in students] == ["fish_a student", "fish_b student"]
    for layer in students:
        assert layer.data.shape == viewer.layers[layer.name.split()[0]].data.shape


def test_a_labels_layer_of_another_shape_is_refused_naming_both(qtbot, viewer, fish, errors):
    viewer.add_labels(np.zeros((10, 40, 32), np.uint8), name="fish_b labels")
    viewer.layers["fish_b labels"].data[2, :20] = 1
    widget = teacher_dock(viewer)
    assert "fish_b + fish_b labels: shapes differ" in widget.image_set.list.item(1).text()
    assert "Cannot train" in widget.image_set.summary.text()
    click(qtbot, widget.panel.train_button)
    assert not widget.runner.is_running
    assert len(errors) == 1
    assert "'fish_b labels'" in errors[0] and "'fish_b'" in errors[0]
    assert "(10, 40, 32)" in errors[0] and "(10, 48, 32)" in errors[0]

    # an image of another slice size is marked in the list
    viewer.add_image(np.zeros((4, 20, 20), np.uint16), name="small")
    widget.image_set.refresh()
    assert (
        widget.image_set.list.item(2).text()
        == "small: slices of 20 x 20, unlike 'fish_a' (untick it)"
    )
    widget.image_set.list.item(2).setCheckState(Qt.CheckState.Unchecked)

    # unticking the image lets the rest train
    item = widget.image_set.list.item(1)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert [image.name for image, _ in widget.image_set.pairs()] == ["fish_a"]


def test_a_folder_of_volumes_opens_as_lazy_layers(qtbot, make_napari_viewer, fish, tmp_path):
    for name, sample in zip(("fish_a", "fish_b"), fish, strict=True):
        tifffile.imwrite(tmp_path / f"{name}.tif", sample.image)
    tifffile.imwrite(tmp_path / "fish_c.tif", fish[1].image, compression="zlib")
    tifffile.imwrite(tmp_path / "fish_a_labels.tif", fish[0].labels_sparse)
    viewer = make_napari_viewer()
    widget = teacher_dock(viewer)
    open_volume_folder(viewer, str(tmp_path))
    names = [layer.name for layer in viewer.layers]
    assert names == ["fish_a", "fish_a_labels", "fish_b", "fish_c"]
    assert isinstance(viewer.layers["fish_a"].data, np.memmap)  # read as it is shown
    assert not isinstance(viewer.layers["fish_c"].data, np.ndarray)  # compressed: dask
    assert isinstance(viewer.layers["fish_a_labels"], Labels)
    # the volumes share one space: the first and its labels shown, the others hidden
    assert [layer.name for layer in viewer.layers if layer.visible] == ["fish_a", "fish_a_labels"]
    widget.image_set.refresh()
    assert [(image.name, labels and labels.name) for image, labels in widget.image_set.pairs()] == [
        ("fish_a", "fish_a_labels"),
        ("fish_b", None),
        ("fish_c", None),
    ]

    # a folder of 2D slices is one stack, not volumes; a mix is refused naming both kinds
    flat = tmp_path / "flat"
    flat.mkdir()
    tifffile.imwrite(flat / "s1.tif", fish[0].image[0])
    with pytest.raises(ReadError, match="no 3D volume"):
        open_volume_folder(viewer, str(flat))
    tifffile.imwrite(tmp_path / "slice.tif", fish[0].image[0])
    with pytest.raises(ReadError, match="mixes 3D volumes .* and 2D images .slice.tif"):
        open_volume_folder(viewer, str(tmp_path))
