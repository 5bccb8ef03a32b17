"""napari dock widgets: one per module, thin over :mod:`napari_distill.core`."""
