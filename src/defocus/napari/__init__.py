"""napari plugin for defocus (install with ``pip install "defocus[napari]"``).

The manifest ``napari.yaml`` contributes five dock widgets (focus map, blur map with its focal
plane, focus-stack fusion, through-focus height, kernel from a pair) and two sample images.
Nothing here is imported by ``import defocus``: the core package does not depend on napari or
Qt.
"""
