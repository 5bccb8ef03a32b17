"""The Pap smear cell contract of the command line, end to end on a tiny stack."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_distill.cli import main
from napari_distill.core.io import read_cell_planes, write_cell_planes, write_labels
from napari_distill.core.samples import make_pap_smear


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Three grey fields of 96 x 96; cells and nuclei painted on the first two only."""
    folder = tmp_path_factory.mktemp("pap")
    sample = make_pap_smear(n_fields=3, field_shape=(96, 96), seed=3)
    fields = sample.image.mean(-1).astype(np.uint8)
    planes = sample.cytoplasm_planes.transpose(1, 0, 2, 3).copy()
    nuclei = sample.nuclei.copy()
    planes[2] = 0  # unannotated
    nuclei[2] = 0
    tifffile.imwrite(folder / "fields.tif", fields)
    write_cell_planes(folder / "cells.tif", planes)
    write_labels(folder / "nuclei.tif", nuclei)
    return folder, sample


def _run(folder, out, *extra):
    return main(
        ["run", "--image", str(folder / "fields.tif"), "--cells", str(folder / "cells.tif"),
         "--nuclei", str(folder / "nuclei.tif"), "--out-dir", str(out), "--steps", "2",
         "--quiet", "--threads", "1", *extra]
    )  # fmt: skip


@pytest.mark.parametrize("strategy", ["supervised", "mean-teacher"])
def test_run_writes_the_contract_files(files, tmp_path, strategy):
    folder, _ = files
    assert _run(folder, tmp_path, "--strategy", strategy, "--seed", "1") == 0
    for name in ("teacher_cells.tif", "teacher_nuclei.tif", "cells.tif", "nuclei.tif"):
        assert (tmp_path / name).exists(), name
    cells = read_cell_planes(tmp_path / "cells.tif")
    assert cells.ndim == 4 and cells.shape[0] == 3 and cells.shape[2:] == (96, 96)
    assert tifffile.imread(tmp_path / "nuclei.tif").shape == (3, 96, 96)
    report = (tmp_path / "report.md").read_text()
    assert f"`{strategy}`" in report and "| 2 | no |" in report


def test_predict_and_evaluate_take_the_same_files(files, tmp_path, capsys):
    folder, _ = files
    assert _run(folder, tmp_path / "run") == 0
    out, nuclei = tmp_path / "p_cells.tif", tmp_path / "p_nuclei.tif"
    assert main(["predict", "--model", str(tmp_path / "run" / "teacher.pt"), "--image",
                 str(folder / "fields.tif"), "--out", str(out), "--nuclei", str(nuclei),
                 "--quiet"]) == 0  # fmt: skip
    assert read_cell_planes(out).shape[0] == 3
    capsys.readouterr()
    assert main(["evaluate", "--prediction", str(folder / "cells.tif"), "--truth",
                 str(folder / "cells.tif"), "--json", str(tmp_path / "s.json")]) == 0  # fmt: skip
    assert "AJI 1.0000" in capsys.readouterr().out
    assert main(["evaluate", "--prediction", str(nuclei), "--truth", str(folder / "nuclei.tif"),
                 "--instances"]) == 0  # fmt: skip


def test_half_a_cell_run_is_refused(files, tmp_path, capsys):
    folder, _ = files
    code = main(["run", "--image", str(folder / "fields.tif"), "--cells",
                 str(folder / "cells.tif"), "--out-dir", str(tmp_path)])  # fmt: skip
    assert code == 2 and "--cells and --nuclei go together" in capsys.readouterr().err
    code = main(["run", "--image", str(folder / "fields.tif"), "--labels",
                 str(folder / "nuclei.tif"), "--strategy", "mean-teacher", "--out-dir",
                 str(tmp_path)])  # fmt: skip
    assert code == 2 and "give --cells" in capsys.readouterr().err
