"""A device chooser that shows what this machine has (GPU name and memory, MPS, CPU)."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QWidget

from napari_distill.core.device import available_devices


class DevicePicker(QComboBox):
    """``auto`` first (the best device present), then every device with its description."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._devices = available_devices()
        best = self._devices[0]
        self.addItem(f"auto ({best.name}: {best.description})", "auto")
        for info in self._devices:
            self.addItem(f"{info.name}: {info.description}", info.name)
        self.setToolTip(
            "Where training and prediction run. 'auto' picks a CUDA GPU, then Apple MPS, "
            "then the CPU."
        )

    def device(self) -> str:
        """The chosen device preference: ``"auto"`` or a device name such as ``"cuda:0"``."""
        return str(self.currentData())

    def summary(self) -> str:
        """One line naming the device that ``auto`` resolves to."""
        best = self._devices[0]
        return f"{best.name} — {best.description}"
