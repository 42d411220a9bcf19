"""Without napari, pytest's doctest collection must not import the widgets module."""

import importlib.util

collect_ignore = [] if importlib.util.find_spec("napari") else ["_widgets.py"]
