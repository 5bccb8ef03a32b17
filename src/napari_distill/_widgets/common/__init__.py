"""What every dock widget shares: the worker runner, the training panel and session, live curves,
layer and device pickers, and the hand-off between widgets (what a layer carries)."""
