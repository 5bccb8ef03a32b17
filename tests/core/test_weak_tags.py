"""Slice tags for ``mixed``: the CSV format, the top-k pooled tag loss on hand-computed
tensors, and a short run that lowers it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from napari_distill.core.config import ModelConfig, TrainConfig
from napari_distill.core.io import ReadError, read_tags_csv, weak_csv_kind, write_tags_csv
from napari_distill.core.progress import run_to_completion
from napari_distill.core.strategies import STRATEGIES, MixedConfig
from napari_distill.core.strategies.tags import tag_loss, tag_vectors
from napari_distill.core.training import train_teacher
from synthetic import fixed_disk_square_volume as tiny_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_tags_csv_reads_spaces_semicolons_empty_and_repeats(tmp_path):
    path = tmp_path / "tags.csv"
    path.write_text('slice,classes,note\n3,1 2,x\n5,"1;2"\n7,\n3,3\n')
    assert weak_csv_kind(path) == "tags"
    assert read_tags_csv(path) == {3: (1, 2, 3), 5: (1, 2), 7: ()}
    points = tmp_path / "points.csv"
    points.write_text("slice,y,x,class\n0,1,2,1\n")
    assert weak_csv_kind(points) == "points"
    for body, message in [
        ("slice,classes\n3,one\n", "whole numbers"),
        ("slice,classes\n3,0 1\n", "never tagged"),
        ("slice,class\n3,1\n", "no column classes"),
    ]:
        path.write_text(body)
        with pytest.raises(ReadError, match=message):
            read_tags_csv(path)


def test_tags_csv_written_is_read_back_and_nothing_is_replaced_unasked(tmp_path):
    tags = {7: (), 3: (2, 1, 2), 12: (4,)}
    path = write_tags_csv(tmp_path / "tags.csv", tags)
    assert path.read_text() == "slice,classes\n3,1 2\n7,\n12,4\n"
    assert weak_csv_kind(path) == "tags"
    assert read_tags_csv(path) == {3: (1, 2), 7: (), 12: (4,)}
    with pytest.raises(FileExistsError, match="already exists"):
        write_tags_csv(path, {1: (1,)})
    assert read_tags_csv(path) == {3: (1, 2), 7: (), 12: (4,)}  # untouched
    write_tags_csv(path, {1: (1,)}, overwrite=True)
    assert read_tags_csv(path) == {1: (1,)}
    with pytest.raises(ValueError, match="never tagged"):
        write_tags_csv(tmp_path / "bad.csv", {1: (0,)})
    with pytest.raises(ValueError, match=".csv"):
        write_tags_csv(tmp_path / "tags.txt", {1: (1,)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tags.csv"]  # no temporary left


def test_tag_vectors_mark_present_and_absent_foreground_classes():
    present, tagged = tag_vectors((2,), (0, 1, 2))
    assert present.tolist() == [0.0, 0.0, 1.0] and tagged.tolist() == [False, True, True]
    with pytest.raises(ValueError, match="no full mask"):
        tag_vectors((3,), (0, 1, 2))


def test_tag_loss_matches_a_hand_computation():
    # two classes, four pixels; class-1 probabilities 1/2, 3/4, 1/4, 1/2 (logit log 3 etc.)
    logit = [0.0, math.log(3.0), -math.log(3.0), 0.0]
    logits = torch.tensor([[0.0] * 4, logit]).view(1, 2, 1, 4)
    # top 2 of class 1: 3/4 and 1/2 -> q = 5/8; present: -log(5/8)
    present, tagged = torch.tensor([[0.0, 1.0]]), torch.tensor([[False, True]])
    assert tag_loss(logits, present, tagged, 0.5).item() == pytest.approx(-math.log(5 / 8))
    # absent: -log(1 - 5/8); max pooling (k = 1): -log(1 - 3/4)
    absent = torch.tensor([[0.0, 0.0]])
    assert tag_loss(logits, absent, tagged, 0.5).item() == pytest.approx(-math.log(3 / 8))
    assert tag_loss(logits, absent, tagged, 0.01).item() == pytest.approx(-math.log(1 / 4))
    # background (untagged) does not count; with both tagged, the mean of the two
    both = torch.tensor([[True, True]])
    q0 = (1 - 0.25 + 1 - 0.5) / 2  # top 2 of class 0: 3/4 and 1/2
    expected = (-math.log(q0) - math.log(5 / 8)) / 2
    assert tag_loss(logits, torch.tensor([[1.0, 1.0]]), both, 0.5).item() == pytest.approx(
        expected, rel=1e-5
    )


def test_a_short_run_on_tags_lowers_the_tag_loss():
    torch.manual_seed(0)
    image, truth = tiny_volume(n=6)
    image[5][truth[5] == 2] = 10.0  # slice 5 has no square: class 2 is absent there
    labels = np.zeros_like(truth)
    labels[[1, 3]] = truth[[1, 3]]
    train = TrainConfig(steps=4, batch_size=2, patch_size=32, validate_every=4, augment=False)
    run = train_teacher(image, labels, model_config=ModelConfig(base_channels=8, depth=2),
                        train_config=train, device="cpu")  # fmt: skip
    teacher = run_to_completion(run.steps())
    config = MixedConfig(lambda_kl=0.0, lambda_h=0.0, lambda_tag=1.0, tag_top_share=0.02)
    student = STRATEGIES["mixed"].build(
        teacher, image, labels, [], device="cpu", strategy_config=config,
        tags={0: (1, 2), 2: (1, 2), 4: (1, 2), 5: (1,), 3: (1,)},  # slice 3 has a full mask
        train_config=dataclasses.replace(train, steps=30, validate_every=30, learning_rate=3e-3),
    )  # fmt: skip
    assert student.objective.tags.slice_indices == (0, 2, 4, 5)
    tags = [record.logs["tags"] for record in student.steps()]
    assert len(tags) == 30 and np.mean(tags[-5:]) < np.mean(tags[:5])
