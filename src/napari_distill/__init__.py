"""napari-distill: segment from a few annotated slices by knowledge distillation.

Importing this package must stay cheap and must not import Qt or napari.
"""

try:
    from ._version import version as __version__
except ImportError:  # pragma: no cover - only without setuptools-scm metadata
    __version__ = "0.1.0"

__all__ = ["__version__"]
