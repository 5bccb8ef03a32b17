"""The one check of an output path, shared by the writers, the pipeline and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from napari_distill.core import io
from napari_distill.core.io import write as io_write
from napari_distill.core.pipeline import check_out_dir


def test_a_good_output_path_leaves_nothing_behind(tmp_path):
    assert io.check_output_path(tmp_path / "teacher.pt", overwrite=False) == tmp_path / "teacher.pt"
    assert list(tmp_path.iterdir()) == []  # the writability probe is gone


def test_output_paths_that_cannot_be_written(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "folder.tif").mkdir()
    with pytest.raises(NotADirectoryError, match=r"file\.txt is a file, not a folder"):
        io.check_output_path(tmp_path / "file.txt" / "deeper" / "out.pt", overwrite=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        io.check_output_path(tmp_path / "missing" / "out.pt", overwrite=True)
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        io.check_output_path(tmp_path / "folder.tif", overwrite=True)
    with pytest.raises(FileExistsError, match=r"--overwrite"):
        io.check_output_path(tmp_path / "file.txt", overwrite=False)
    assert io.check_output_path(tmp_path / "file.txt", overwrite=True)
    with pytest.raises(ValueError, match=r"writes \.tif / \.tiff files"):
        io.check_output_path(tmp_path / "labels.png", overwrite=False, suffixes=(".tif", ".tiff"))


def test_a_folder_refusing_files_is_found_by_trying(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(io_write.tempfile, "mkstemp", refuse)
    with pytest.raises(PermissionError, match=r"\(Read-only file system\)"):
        io.check_output_path(tmp_path / "labels.tif", overwrite=False)
    with pytest.raises(PermissionError):  # the writers check the same way, before writing
        io.write_labels(tmp_path / "labels.tif", np.ones((4, 4), np.uint8))
    with pytest.raises(PermissionError):
        check_out_dir(tmp_path / "run", overwrite=False)


def test_the_pipeline_folder_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "file" / "run", overwrite=False)
    assert check_out_dir(tmp_path / "new" / "run", overwrite=False)  # made with its parents
    assert (tmp_path / "new" / "run").is_dir()
