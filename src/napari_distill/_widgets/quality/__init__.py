"""The Quality review dock widget (``widget.py``) and its pieces: the fit tab, the review tab, the
plot and the table of scores."""
