"""Z-stack: which areas are in focus in each frame, and one all-in-focus image with a depth map.

Runs on a real photographic focus stack from the shared data (cmcguinness/focusstack, Apache-2.0),
found under ``$DEFOCUS_DATA`` (default ``../shared/data`` beside the repository); without it, on
a stack made from scikit-image's astronaut, each frame sharp in one band::

    DEFOCUS_DATA=/path/to/data python examples/focus_stack.py [OUTDIR]

Pictures go to OUTDIR (default ``examples/output``).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from skimage import data

import defocus
from defocus.viz import heatmap_figure, mask_view, save_figure

DATA = Path(os.environ.get("DEFOCUS_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))


def load_stack() -> list[np.ndarray]:
    """Frames in focus order, RGB uint8."""
    paths = sorted((DATA / "real_stacks/cmcguinness_step").glob("step*.jpg"))
    if paths:
        return [defocus.read_image(p).data for p in paths]
    sharp = data.astronaut()
    disk = defocus.render("disk", radius=6.0)
    blurred = defocus.blur(sharp, disk, channel_axis=-1, dtype=np.uint8)
    frames = []
    for rows in np.array_split(np.arange(sharp.shape[0]), 4):
        frame = blurred.copy()
        frame[rows] = sharp[rows]
        frames.append(frame)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", default=Path(__file__).parent / "output")
    out = Path(parser.parse_args().outdir)
    frames = load_stack()

    # how sharp each part of the first frame is: a heatmap of the local focus measure
    fmap = defocus.focus_map(frames[0], channel_axis=-1)
    fig = heatmap_figure(
        frames[0],
        fmap,
        label="focus (a.u., higher = sharper)",
        channel_axis=-1,
        vmax=float(np.percentile(fmap, 99.5)),
        title="frame 0: focus map",
    )
    save_figure(fig, out / "stack_focus_heatmap.png", dpi=50)

    # fuse the stack into one all-in-focus image, with the frame each pixel came from
    res = defocus.fuse(frames, channel_axis=-1)
    print(f"fused {len(frames)} frames; {int(res.aligned.sum())} aligned")
    defocus.write_image(out / "stack_fused.tif", res.image, channel_axis=-1)  # full size
    # the pixels where frame 0 is the sharpest of the stack, confidently
    mask = (res.depth < 0.5) & (res.confidence > 0.2)
    print(f"frame 0 is the sharpest frame at {mask.mean():.0%} of the pixels")
    fig = Figure(figsize=(12.0, 3.6), layout="constrained")
    ax_mask, ax_fused, ax_depth = fig.subplots(1, 3)
    ax_mask.imshow(mask_view(frames[0], mask, background="black", channel_axis=-1))
    ax_mask.set_title("frame 0: only the pixels where it is sharpest", fontsize=10)
    ax_fused.imshow(res.image)
    ax_fused.set_title(f"all {len(frames)} frames fused", fontsize=10)
    im = ax_depth.imshow(res.depth, cmap="turbo", vmin=0, vmax=len(frames) - 1)
    ax_depth.set_title("depth: frame in focus", fontsize=10)
    fig.colorbar(im, ax=ax_depth, shrink=0.8, label="frame index")
    for ax in (ax_mask, ax_fused, ax_depth):
        ax.set_axis_off()
    save_figure(fig, out / "stack_fused.png", dpi=60)
    print(f"wrote stack_focus_heatmap.png, stack_fused.png and stack_fused.tif to {out}")


if __name__ == "__main__":
    main()
