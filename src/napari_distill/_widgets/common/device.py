"""A device chooser that shows what this machine has (GPU name and memory, MPS, CPU), and the
one place where the widgets set how many CPU threads a run computes with."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QWidget

from napari_distill.core.device import available_devices, set_cpu_threads


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


def use_cpu_threads(threads: int | None = None) -> int:
    """Set the CPU threads torch computes with before a run starts; returns the count.

    ``threads`` as chosen (*Advanced > CPU threads*), or None for automatic: every core but
    one, which the GUI keeps to itself so napari stays responsive, and beside other work no
    thread spins against a busy core (:func:`~napari_distill.core.device.auto_cpu_threads`,
    the CLI's ``--threads auto``). Every widget goes through here.
    """
    return set_cpu_threads(threads)
