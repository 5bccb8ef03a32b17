"""The Teacher dock widget (``widget.py``): train a teacher on the painted slices, predict the
stack."""
