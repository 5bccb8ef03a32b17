"""The npe2 manifest is valid and every python_name in it imports; the core stays Qt-free."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from npe2 import PluginManifest

MANIFEST = Path(__file__).parents[1] / "src" / "napari_distill" / "napari.yaml"


def test_manifest_is_valid():
    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-distill"


def test_manifest_is_registered_under_the_entry_point():
    manifest = PluginManifest.from_distribution("napari-distill")
    assert manifest.name == "napari-distill"


@pytest.mark.parametrize(
    "python_name",
    [c.python_name for c in PluginManifest.from_file(MANIFEST).contributions.commands or []],
)
def test_every_python_name_imports(python_name):
    module_name, attribute = python_name.split(":")
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attribute))


def test_core_imports_neither_napari_nor_qt():
    code = (
        "import sys, napari_distill, napari_distill.core, pkgutil, importlib\n"
        "import napari_distill.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'napari_distill.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "gui = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt'})\n"
        "print(','.join(gui))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"core imported GUI modules: {out.stdout}"


def test_npe2_validate_command():
    npe2 = Path(sys.executable).parent / "npe2"
    out = subprocess.run([str(npe2), "validate", "napari-distill"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
