"""The one-call pipeline of method 1 on a tiny volume; the report and its plot."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import tifffile
import torch

from napari_distill.core.config import (
    InstanceConfig,
    KDConfig,
    ModelConfig,
    PredictConfig,
    QualityConfig,
    TrainConfig,
)
from napari_distill.core.device import device_text as _device_text
from napari_distill.core.evaluation import clean_semantic, no_comparison
from napari_distill.core.inference import predict_bundle
from napari_distill.core.models import load_checkpoint
from napari_distill.core.pipeline import PipelineConfig, PipelineProgress, run_pipeline
from napari_distill.core.progress import run_to_completion
from napari_distill.core.quality import Selection
from napari_distill.core.report import RunSummary, plot_scores, render_report
from napari_distill.core.stages import OUTPUT_FILES, check_out_dir
from synthetic import fixed_disk_square_volume as tiny_volume

# The clean-up of the student's labels: one piece of class 1, and no piece smaller than the
# tiny volume itself (8 x 32 x 32), so that the test sees it ran whatever a student of three
# steps draws (it may draw one class everywhere: nothing else would change).
CLEANUP = InstanceConfig(
    keep_largest_component=True, largest_component_classes=(1,), min_size=8 * 32 * 32 + 1
)


def tiny_config(steps: int = 3) -> PipelineConfig:
    train = TrainConfig(steps=steps, batch_size=2, patch_size=32, validate_every=2)
    return PipelineConfig(
        # Two teachers: the whole pipeline with an ensemble (the command line's test runs one).
        model=ModelConfig(base_channels=8, depth=3, members=2),
        teacher=train,
        quality=QualityConfig(
            steps=steps, base_channels=4, input_size=32, variants_per_slice=2, batch_size=4
        ),
        strategy_config=KDConfig(),
        student=train,
        predict=PredictConfig(tile_size=None),
        cleanup=CLEANUP,
    )


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    image, truth = tiny_volume()
    labels = np.zeros_like(truth)
    labels[[1, 3, 5, 6]] = truth[[1, 3, 5, 6]]
    out_dir = tmp_path_factory.mktemp("run")
    records = []
    generator = run_pipeline(
        image, labels, out_dir, config=tiny_config(), device="cpu", scale=(2.0, 1.0, 1.0)
    )
    while True:
        try:
            records.append(next(generator))
        except StopIteration as stop:
            return stop.value, records, image, labels, out_dir


def test_pipeline_writes_every_output(pipeline_run):
    result, records, image, labels, out_dir = pipeline_run
    for name in OUTPUT_FILES.values():
        assert (out_dir / name).is_file(), name
    for name in ("teacher_labels.tif", "student_labels.tif"):
        stack = tifffile.imread(out_dir / name)
        assert stack.shape == labels.shape and set(np.unique(stack)) <= {0, 1, 2}
    np.testing.assert_array_equal(tifffile.imread(out_dir / "student_labels.tif"),
                                  result.student_labels)  # fmt: skip
    student = load_checkpoint(out_dir / "student.pt", kind="student")[0]
    as_predicted = run_to_completion(
        predict_bundle(student, image, config=tiny_config().predict, keep_probabilities=False)
    ).labels
    expected = clean_semantic(as_predicted, True, CLEANUP.min_size, (1,))
    assert as_predicted.any() and not expected.any()
    np.testing.assert_array_equal(result.student_labels, expected)  # cleaned as asked
    assert student.extra["strategy"] == "kd" and student.model_config.members == 1
    teacher = load_checkpoint(out_dir / "teacher.pt", kind="teacher")[0]
    assert teacher.kind == "teacher" and teacher.model_config.members == 2
    csv_lines = (out_dir / "scores.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + image.shape[0]  # a header and one row per slice
    selection = Selection.load(out_dir / "scores.csv")
    unannotated = sorted(set(range(image.shape[0])) - selection.annotated)
    assert sorted(selection.confidence) == sorted(selection.scores)  # every slice has both
    summary = result.summary
    assert summary.least_confident == tuple(selection.worst_first("confidence")[:5])
    assert set(summary.least_confident) <= set(unannotated) and summary.least_confident
    assert summary.score_agreement == pytest.approx(selection.agreement(), nan_ok=True)
    report = (out_dir / "report.md").read_text()
    assert "Spearman" in report and "tau = 0.7" in report and "scores.png" in report
    listed = ", ".join(str(i) for i in summary.least_confident)
    assert f"| slices the teacher is least sure of | {listed} |" in report
    # The two members held out different slices; the report names them and the validation
    # slices (the student's) are the first member's.
    (_, (first,)), (_, (second,)) = teacher.extra["member_splits"]
    assert first != second and summary.validation == (first,)
    assert summary.member_validation == ((first,), (second,))
    assert (
        "| teacher | an ensemble of 2 networks (the mean of their probabilities), each "
        f"validated on the slices it held out ({first}; {second}): its validation Dice is "
        "their mean |"
    ) in report
    assert (out_dir / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pipeline_compares_the_teacher_with_propagation(pipeline_run):
    result, _, image, labels, out_dir = pipeline_run
    comparison = result.comparison
    # The two members held out different painted slices: both sources are scored there.
    assert comparison.fair and sorted(s for held in comparison.held_out for s in held) == [
        s for s in (1, 3, 5, 6) if any(s in v for v in result.summary.member_validation)
    ]
    assert [c.class_id for c in comparison.classes] == [0, 1, 2]
    pseudo = tifffile.imread(out_dir / "pseudo_labels.tif")
    painted = [1, 3, 5, 6]
    if comparison.uses_propagation:  # the paint is kept where it is
        np.testing.assert_array_equal(pseudo[painted], labels[painted])
    else:  # the teacher alone
        np.testing.assert_array_equal(pseudo, result.teacher_labels)
    report = (out_dir / "report.md").read_text()
    assert "## Teacher vs propagation" in report and comparison.summary() in report
    for choice in comparison.foreground():
        assert f"| {choice.name} | " in report


def test_pipeline_progress_names_its_stages(pipeline_run):
    result, records, *_ = pipeline_run
    assert all(isinstance(r, PipelineProgress) for r in records)
    stages = [r.stage for r in records]
    assert stages[0] == "teacher" and stages[-1] == "student labels"
    assert [r.stage_index for r in records] == sorted(r.stage_index for r in records)
    assert {r.n_stages for r in records} == {6}
    summary = result.summary
    assert summary.annotated == (1, 3, 5, 6) and summary.n_slices == 8
    assert set(summary.accepted) <= {0, 2, 4, 7}
    assert set(summary.stage_seconds) == {
        "teacher", "teacher labels", "propagation", "quality", "student", "student labels"
    }  # fmt: skip


def test_out_dir_is_never_overwritten_unless_asked(pipeline_run, tmp_path):
    result, _, image, labels, out_dir = pipeline_run
    before = (out_dir / "report.md").read_text()
    with pytest.raises(FileExistsError, match="report.md"):
        next(run_pipeline(image, labels, out_dir, config=tiny_config(), device="cpu"))
    assert (out_dir / "report.md").read_text() == before
    assert check_out_dir(out_dir, overwrite=True)["report"] == out_dir / "report.md"
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        check_out_dir(tmp_path / "file", overwrite=False)


def test_pipeline_config_checks_the_strategy():
    with pytest.raises(ValueError, match="clean-up is semantic"):
        PipelineConfig(cleanup=InstanceConfig(mode="instances"))
    with pytest.raises(ValueError, match="unknown strategy"):
        PipelineConfig(strategy="nope")
    with pytest.raises(ValueError, match="KDConfig"):
        PipelineConfig(strategy_config=QualityConfig())
    fixed = PipelineConfig().with_steps(7)
    assert fixed.teacher.steps == fixed.student.steps == fixed.quality.steps == 7


def test_report_text_and_plot(tmp_path):
    summary = RunSummary(
        n_slices=5, annotated=(1, 3), validation=(), teacher_score=0.5, student_score=0.6,
        quality_spearman=math.nan, tau=0.7, accepted=(0,), strategy="kd",
        stage_seconds={"teacher": 75.0}, device="cpu (2 threads)",
    )  # fmt: skip
    text = render_report(summary)
    assert "| 1 of 3 unannotated |" in text and "+0.100 vs the teacher" in text
    assert "| slices the teacher is least sure of | n/a |" in text
    assert "| teacher | one network |" in text
    views = render_report(dataclasses.replace(summary, teachers=3, views=True))
    assert "| teacher | an ensemble of 3 networks slicing the volume along its three axes" in views
    apart = dataclasses.replace(  # members held out other slices: no difference drawn
        summary, teachers=3, validation=(3,), member_validation=((3,), (1,), (4,))
    )
    assert "(on slice(s) 3; not compared with the teacher's, a mean over other slices)" in (
        render_report(apart)
    ) and "vs the teacher" not in render_report(apart)
    sure = render_report(dataclasses.replace(summary, score_agreement=0.25, least_confident=(4, 0)))
    assert "| quality score vs teacher confidence (Spearman) | 0.250 |" in sure
    assert "| slices the teacher is least sure of | 4, 0 |" in sure
    assert "n/a" in text and "1 min 15 s" in text
    assert "Teacher vs propagation" not in text  # not compared
    unfair = no_comparison("flow", (0, 1), "the teacher trained on every painted slice")
    text = render_report(dataclasses.replace(summary, comparison=unfair))
    assert "No fair comparison with propagation: the teacher trained on every" in text
    assert "validation slice(s) only" not in text  # none at all is said differently
    one = render_report(dataclasses.replace(summary, annotated=(1, 2, 3), validation=(2,)))
    assert "**1 validation slice(s) only**: these scores are noisy" in one
    three = dataclasses.replace(summary, annotated=(0, 1, 2, 3), validation=(1, 2, 3))
    assert "validation slice(s) only" not in render_report(three)
    scores = np.array([0.9, np.nan, 0.2, np.nan, 0.5])
    path = plot_scores(tmp_path / "scores.png", scores, 0.7, annotated=(1, 3), accepted=(0,))
    assert path.stat().st_size > 1000
    dotted = plot_scores(
        tmp_path / "dots.png", scores, 0.7, annotated=(1, 3), accepted=(0,),
        confidence=np.array([0.95, 0.5, 0.3, np.nan, 0.8]),
    )  # fmt: skip
    assert dotted.read_bytes() != path.read_bytes()  # the dots are drawn


def test_the_report_names_the_cpu_threads_in_good_english():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert _device_text(torch.device("cpu")) == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert _device_text(torch.device("cpu")) == "cpu (2 threads)"
    finally:
        torch.set_num_threads(before)
