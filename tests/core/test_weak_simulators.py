"""The noise and scribble simulators and the points -> disks conversion of weak labels."""

import numpy as np
import pytest

from napari_distill.core.io import ReadError, points_to_labels, read_points_csv
from napari_distill.core.samples import (
    NOISE_KINDS,
    corrupt_labels,
    noise_share,
    simulate_points,
    simulate_scribbles,
)
from synthetic import disk_square_volume


@pytest.fixture(scope="module")
def clean():
    return disk_square_volume(n=4, size=48)[1]


@pytest.mark.parametrize("kind", [*NOISE_KINDS, "mixture"])
@pytest.mark.parametrize("share", [0.3, 0.5, 0.8])
def test_noise_hits_the_requested_share_within_two_points(clean, kind, share):
    noisy = corrupt_labels(clean, share, kind, seed=3)
    assert noisy.shape == clean.shape and noisy.dtype == clean.dtype
    assert abs(noise_share(noisy, clean) - share) <= 0.02


def test_noise_is_seeded_and_kinds_differ(clean):
    a = corrupt_labels(clean, 0.3, "boundary", seed=1)
    assert np.array_equal(a, corrupt_labels(clean, 0.3, "boundary", seed=1))
    assert not np.array_equal(a, corrupt_labels(clean, 0.3, "boundary", seed=2))
    eroded = corrupt_labels(clean, 0.3, "erosion", seed=1)
    dilated = corrupt_labels(clean, 0.3, "dilation", seed=1)
    assert np.count_nonzero(eroded) < np.count_nonzero(clean) < np.count_nonzero(dilated)


def test_noise_share_counts_wrong_classes_and_rejects_bad_shares():
    clean = np.array([[0, 1, 1, 2]])
    assert noise_share(np.array([[1, 1, 2, 2]]), clean) == pytest.approx(2 / 4)
    assert noise_share(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    with pytest.raises(ValueError, match="share"):
        corrupt_labels(clean, 1.0)
    with pytest.raises(ValueError, match="unknown noise kind"):
        corrupt_labels(clean, 0.2, "smudge")


def test_scribbles_lie_inside_their_structure_and_leave_the_rest_unknown(clean):
    weak = simulate_scribbles(clean, slices=[0, 2], length=8, background_label=9)
    assert not weak[[1, 3]].any()
    painted = weak != 0
    assert painted.any() and painted.mean() < 0.1
    truth = np.where(clean == 0, 9, clean)
    assert np.array_equal(weak[painted], truth[painted])
    for z in (0, 2):  # every class (and the background) gets a stroke
        assert set(np.unique(weak[z])) == {0, 9, *np.unique(clean[z][clean[z] > 0])}
        for label in np.unique(weak[z][weak[z] > 0]):
            assert np.count_nonzero(weak[z] == label) <= 8 * 3  # one stroke per structure


def test_points_fall_in_their_structure(clean):
    points = simulate_points(clean, slices=[1], per_structure=2, seed=0)
    assert points.shape[1] == 4 and (points[:, 0] == 1).all()
    assert np.array_equal(clean[points[:, 0], points[:, 1], points[:, 2]], points[:, 3])


def test_points_become_disks_of_their_class():
    points = np.array([[0, 5, 5, 2], [1, 0, 9, 0], [7, 1, 1, 1]])  # the last is outside
    weak = points_to_labels(points, (2, 10, 10), radius=2, background_label=255)
    rows, cols = np.mgrid[:10, :10]
    disk = (rows - 5) ** 2 + (cols - 5) ** 2 <= 4
    assert np.array_equal(weak[0] == 2, disk)
    edge = (rows - 0) ** 2 + (cols - 9) ** 2 <= 4
    assert np.array_equal(weak[1] == 255, edge)
    assert set(np.unique(weak)) == {0, 2, 255}


def test_points_csv_with_or_without_header(tmp_path):
    named = tmp_path / "named.csv"
    named.write_text("x,y,slice,class,note\n4.6,3,1,2,a\n0,0,0,0,b\n")
    assert read_points_csv(named).tolist() == [[1, 3, 5, 2], [0, 0, 0, 0]]
    bare = tmp_path / "bare.csv"
    bare.write_text("2,3,4,1\n")
    assert read_points_csv(bare).tolist() == [[2, 3, 4, 1]]
    bad = tmp_path / "bad.csv"
    bad.write_text("slice,y,x\n1,2,3\n")
    with pytest.raises(ReadError, match="class"):
        read_points_csv(bad)
