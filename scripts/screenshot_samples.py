"""Screenshots of the two sample data sets in napari, for the docs.

Needs a display with OpenGL; headless, run it under Xvfb from the repository root:

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot_samples.py

Writes ``docs/sample_medaka.png`` and ``docs/sample_pap_smear.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import napari
import numpy as np

from napari_distill._sample_data import medaka_ct, pap_smear

logger = logging.getLogger("screenshot_samples")
DOCS = Path(__file__).resolve().parents[1] / "docs"
WINDOW_SIZE = (1300, 850)


def _add(viewer: napari.Viewer, layers: list) -> None:
    for data, kwargs, layer_type in layers:
        getattr(viewer, f"add_{layer_type}")(data, **kwargs)


def _grab(viewer: napari.Viewer, path: Path) -> None:
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    napari.qt.get_qapp().processEvents()
    viewer.reset_view()
    napari.qt.get_qapp().processEvents()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    logger.info("wrote %s", path)


def medaka(path: Path) -> None:
    """The annotated slice that shows the most organs, sparse labels over the CT."""
    layers = medaka_ct()
    viewer = napari.Viewer(show=True, title="napari-distill: Medaka CT (synthetic)")
    _add(viewer, layers)
    sparse = layers[-1][0]  # the painted layer comes last (napari selects it)
    annotated = np.flatnonzero(sparse.reshape(sparse.shape[0], -1).any(axis=1))
    organs = [np.unique(sparse[i]).size for i in annotated]
    best = int(annotated[int(np.argmax(organs))])
    viewer.dims.set_current_step(0, best)
    viewer.layers["medaka painted"].opacity = 0.45
    viewer.layers.selection.active = viewer.layers["medaka painted"]
    _grab(viewer, path)
    viewer.close()


def pap(path: Path) -> None:
    """The annotated field with its sparse labels, outlines only so the stain stays visible."""
    viewer = napari.Viewer(show=True, title="napari-distill: Pap smear (synthetic)")
    _add(viewer, pap_smear())
    labels = viewer.layers["pap painted"]
    labels.contour = 2
    labels.opacity = 0.9
    viewer.dims.set_current_step(0, 0)
    viewer.layers.selection.active = labels
    _grab(viewer, path)
    viewer.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    DOCS.mkdir(exist_ok=True)
    medaka(DOCS / "sample_medaka.png")
    pap(DOCS / "sample_pap_smear.png")
