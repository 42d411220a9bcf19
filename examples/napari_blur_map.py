"""The napari plugin from Python: open the tilted sample, dock the Blur map widget and run it.

Needs ``pip install "defocus[napari]"``. The same is available from napari's menus:
File > Open Sample > defocus, and Plugins > defocus > Blur map::

    python examples/napari_blur_map.py                    # interactive viewer
    python examples/napari_blur_map.py --screenshot OUT.png   # save the window and quit
"""

from __future__ import annotations

import argparse

import napari


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", metavar="PNG", help="save the window there and quit")
    args = parser.parse_args()

    viewer = napari.Viewer()
    viewer.window.resize(1300, 750)
    viewer.open_sample("defocus", "tilted_gravel")
    _, widget = viewer.window.add_plugin_dock_widget("defocus", "Blur map")
    widget.image.value = viewer.layers["tilted gravel"]
    # napari >= 0.9 moved the scale bar to the canvas overlays
    canvas = getattr(viewer, "canvas", None)
    (canvas.overlays.scale_bar if canvas is not None else viewer.scale_bar).visible = True

    def finished() -> None:
        print(widget.status.value)
        viewer.layers.selection.active = viewer.layers["tilted gravel blur sigma (px)"]
        if args.screenshot:
            viewer.screenshot(args.screenshot, canvas_only=False)
            viewer.close()

    widget.run().finished.connect(finished)
    napari.run()


if __name__ == "__main__":
    main()
