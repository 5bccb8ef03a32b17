"""Method 1 over a project of tiny volumes: outputs per image, scores and selection carrying
the image, the student learning from unlabelled images, and memory that does not grow with
the number of volumes (their predictions live on disk)."""

from __future__ import annotations

import csv
import dataclasses
import gc
import tracemalloc

import numpy as np
import pytest
import tifffile

from napari_distill.core.config import (
    KDConfig,
    ModelConfig,
    PredictConfig,
    QualityConfig,
    TrainConfig,
)
from napari_distill.core.models import load_checkpoint
from napari_distill.core.pipeline import PipelineConfig
from napari_distill.core.progress import run_to_completion
from napari_distill.core.project.files import Project, ProjectImage, load_project
from napari_distill.core.project.pipeline import run_project_pipeline
from synthetic import fixed_disk_square_volume


def tiny_config(steps: int = 3, context: int = 0, tau: float = 0.0) -> PipelineConfig:
    train = TrainConfig(steps=steps, batch_size=2, patch_size=32, validate_every=2)
    return PipelineConfig(
        model=ModelConfig(base_channels=8, depth=3, context_slices=context),
        teacher=train,
        quality=QualityConfig(
            steps=steps,
            base_channels=4,
            input_size=32,
            variants_per_slice=2,
            batch_size=4,
            tau=tau,
        ),  # fmt: skip
        strategy_config=KDConfig(),
        student=train,
        predict=PredictConfig(tile_size=None),
    )


def _arrays_project(n_images: int, n: int = 8, size: int = 32) -> Project:
    images = []
    for k in range(n_images):
        image, truth = fixed_disk_square_volume(n=n, size=size, seed=k)
        labels = None
        if k == 0:
            labels = np.zeros_like(truth)
            labels[[1, 3, 5, 6]] = truth[[1, 3, 5, 6]]
        images.append(ProjectImage(f"fish{k}", image, labels, scale=(2.0, 1.0, 1.0)))
    return Project(tuple(images))


@pytest.fixture(scope="module")
def project_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for item in _arrays_project(3).images:
        tifffile.imwrite(root / "images" / f"{item.name}.tif", item.image)
        if item.labels is not None:
            tifffile.imwrite(root / "labels" / f"{item.name}_labels.tif", item.labels)
    (root / "p.toml").write_text('images = "images/*.tif"\nlabels_dir = "labels"\n')
    project = load_project(root / "p.toml")
    result = run_to_completion(
        run_project_pipeline(project, root / "out", config=tiny_config(context=1), device="cpu")
    )
    return result, project, root / "out"


def test_a_project_writes_each_images_labels(project_run):
    result, project, out = project_run
    for name in project.names:
        for suffix in ("_teacher_labels.tif", "_labels.tif"):
            labels = tifffile.imread(out / f"{name}{suffix}")
            assert labels.shape == (8, 32, 32) and set(np.unique(labels)) <= {0, 1, 2}
    for name in ("teacher.pt", "quality.pt", "student.pt", "scores.json", "project.json"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    assert "## Per image" in report and "| fish2 | 8 | 0 |" in report
    assert not [p for p in out.iterdir() if p.name.startswith(".work-")]  # memmaps removed
    assert load_project(out / "project.json").names == project.names  # the run repeats


def test_scores_and_selection_carry_the_image(project_run):
    result, project, out = project_run
    with (out / "scores.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["image"] for r in rows] == [n for n in project.names for _ in range(8)]
    assert {r["slice"] for r in rows if r["annotated"] == "1"} == {"1", "3", "5", "6"}
    assert all(r["image"] == "fish0" for r in rows if r["annotated"] == "1")
    # tau = 0: every scored unpainted slice of every image is accepted, and the student
    # learnt from the unlabelled images too (the stack's slices past fish0's).
    assert result.selection.accepted()["fish2"] == list(range(8))
    accepted = result.student.extra["accepted_slices"]
    assert len(accepted) == 4 + 8 + 8 and max(accepted) > 16


def test_existing_outputs_are_not_replaced(project_run):
    _, project, out = project_run
    with pytest.raises(FileExistsError, match="fish0_labels.tif"):
        next(run_project_pipeline(project, out, config=tiny_config()))


def _peak_bytes(n_images: int, tmp_path) -> int:
    project = _arrays_project(n_images, n=8, size=128)
    config = dataclasses.replace(tiny_config(steps=2), predict=PredictConfig(tile_size=None))
    gc.collect()
    tracemalloc.start()
    try:
        run_to_completion(
            run_project_pipeline(
                project, tmp_path / f"out{n_images}", config=config, device="cpu",
                max_pseudo_slices=8,
            )
        )  # fmt: skip
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_number_of_volumes(project_run, tmp_path):
    """8 volumes against 2 (after ``project_run``: one-time allocations of first use are not
    counted). A run that kept every volume's image, probabilities (3 x 8 x 128 x 128 float32)
    and labels in memory would peak about 14 MB higher with 8; what may grow is bounded
    (the intensity window's sample of slices, at most 2 M voxels)."""
    two = _peak_bytes(2, tmp_path)
    eight = _peak_bytes(8, tmp_path)
    # measured: 4.1 MB and 8.4 MB; keeping them in memory would add about 14 MB more
    assert eight < two + 10e6, (two / 1e6, eight / 1e6)


def test_views_are_refused_for_a_project_before_anything_is_written(tmp_path):
    views = dataclasses.replace(tiny_config(), model=ModelConfig(members=3, views=True))
    for config, given in ((views, None), (tiny_config(), {"views": True})):
        with pytest.raises(ValueError, match="views cannot be used for several images: .*"
                           "volume after volume"):  # fmt: skip
            run_to_completion(
                run_project_pipeline(_arrays_project(2), tmp_path / "out", config=config,
                                     device="cpu", plan_given=given)
            )  # fmt: skip
        assert not (tmp_path / "out").exists()


def test_a_planned_project_teacher_slices_along_one_axis(tmp_path):
    result = run_to_completion(
        run_project_pipeline(_arrays_project(2), tmp_path / "out", config=tiny_config(),
                             device="cpu", plan_given={"steps": 2})
    )  # fmt: skip
    saved = load_checkpoint(tmp_path / "out" / "teacher.pt")[0]
    views = next(d for d in saved.extra["plan"]["decisions"] if d["setting"] == "views")
    assert views["value"] is False and "volume after volume" in views["reason"]
    assert not result.teacher.model_config.views and not saved.model_config.views
