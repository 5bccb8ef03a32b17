"""*Export for bioimage.io...*: the Teacher's or Student's model as a bioimage.io package.

The button sits beside *Save model...*. It asks for a ``.zip`` (and, when that file exists,
whether to replace it), then writes the package in the widget's worker: tracing the network,
writing the test tensors and validating the package take a few seconds. The test input is the
middle slice of the widget's image layer (the bundled sample when there is none).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

from napari.layers import Layer
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import QFileDialog, QMessageBox, QPushButton, QWidget

from napari_distill._widgets.common.handoff import image_data
from napari_distill._widgets.common.workers import WorkerRunner
from napari_distill.core.models import ModelBundle

PACKAGE_FILTER = "bioimage.io model (*.zip)"


def export_steps(
    bundle: ModelBundle, target: Path, image: Any, rgb: bool
) -> Generator[str, None, Path]:
    """The export as a generator for :class:`WorkerRunner` (one record, then the package)."""
    from napari_distill.core.export import export_bioimageio

    yield f"Exporting to {target.name}..."
    return export_bioimageio(bundle, target, image=image, rgb=rgb, overwrite=True)


class ExportModelButton(QPushButton):
    """Exports ``model()`` with ``runner``; ``image()`` gives the layer of the test input.

    ``on_finish`` is called on the GUI thread when the export ends (the widget refreshes its
    buttons).
    """

    def __init__(
        self,
        role: str,
        model: Callable[[], ModelBundle | None],
        image: Callable[[], Layer | None],
        runner: WorkerRunner,
        on_finish: Callable[[], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Export for bioimage.io...", parent)
        self.setToolTip(
            f"Write the {role} as a bioimage.io model package (.zip: TorchScript weights, "
            "normalisation, a test slice from the image; validated), the format of the "
            "bioimage.io model zoo's tools."
        )
        self.role, self._model, self._image = role, model, image
        self._runner, self._on_finish = runner, on_finish
        self.clicked.connect(self.export)

    def ask_path(self) -> Path | None:
        """A ``.zip`` chosen by the user; an existing one only when they agree to replace it."""
        path, _ = QFileDialog.getSaveFileName(
            self,
            f"Export the {self.role} for bioimage.io",
            f"{self.role}.zip",
            PACKAGE_FILTER,
            options=QFileDialog.Option.DontConfirmOverwrite,  # asked below, in our words
        )
        if not path:
            return None
        target = Path(path) if Path(path).suffix.lower() == ".zip" else Path(f"{path}.zip")
        if target.exists():
            answer = QMessageBox.question(
                self,
                "Replace the package?",
                f"{target.name} already exists. Replace it?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return None
        return target

    def export(self) -> None:
        from napari_distill.core.export import ExportError, check_exportable

        bundle = self._model()
        if bundle is None:
            show_error(f"There is no {self.role} to export yet: train or load one.")
            return
        try:
            check_exportable(bundle)
        except ExportError as error:
            show_error(f"Cannot export this {self.role}: {error}")
            return
        target = self.ask_path()
        if target is None:
            return
        layer = self._image()
        image = None if layer is None else image_data(layer)
        rgb = bool(layer is not None and getattr(layer, "rgb", False))
        self._runner.start(
            export_steps,
            bundle,
            target,
            image,
            rgb,
            on_return=lambda path: show_info(f"Exported {Path(path).name} (bioimage.io)"),
            on_finish=lambda _outcome: self._on_finish(),
            error_message=f"Could not export the {self.role}",
        )
        self._on_finish()  # the widget disables its buttons while the runner works
