"""Qt-free core of napari-distill: numpy, torch, scikit-image and tifffile only.

Nothing under this package may import napari, qtpy, magicgui or superqt: the command line,
the benchmarks and the tests use it without a display.
"""
