"""The Student dock widget (``widget.py``) and its pieces: the inputs, the strategy's settings
form, the labels' clean-up and the prediction and export tasks."""
