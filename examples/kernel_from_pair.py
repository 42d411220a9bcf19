"""Original and blurred image: what kernel blurred it, which model explains it, and how to apply
it to new images and undo it.

Runs on a real SEM pair from the shared data (the same field 8.3 µm and 18.3 µm from focus,
DeepFocus, MIT licence), found under ``$DEFOCUS_DATA`` (default ``../shared/data`` beside the
repository); without it, on scikit-image's camera blurred by a disk of radius 4 px::

    DEFOCUS_DATA=/path/to/data python examples/kernel_from_pair.py [OUTDIR]

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
from defocus.viz import kernel_figure, save_figure, to_display

DATA = Path(os.environ.get("DEFOCUS_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))
PAIR = DATA / "real/sem_deepfocus_wd/series_0_def-13324_astx-466_asty219_{}.png"


def load_pair() -> tuple[np.ndarray, np.ndarray, str]:
    """The sharper and the blurrier image of one scene, and what they are."""
    if Path(str(PAIR).format("pert5000")).is_file():
        sharp = defocus.read_image(str(PAIR).format("pert5000")).data[:512, :512]
        blurry = defocus.read_image(str(PAIR).format("pert-5000")).data[:512, :512]
        return sharp, blurry, "SEM, 8.3 µm → 18.3 µm from focus"
    sharp = data.camera()
    blurry = defocus.blur(sharp, defocus.render("disk", radius=4.0), dtype=np.float32)
    blurry += np.random.default_rng(0).normal(0, 1.0, blurry.shape).astype(np.float32)
    return sharp, blurry, "camera ⊛ disk(radius 4 px) + noise"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", nargs="?", default=Path(__file__).parent / "output")
    out = Path(parser.parse_args().outdir)

    sharp, blurry, what = load_pair()
    est = defocus.estimate_kernel(sharp, blurry)
    fit = defocus.fit_psf(est.kernel)
    params = ", ".join(f"{k} = {v:.2f} px" for k, v in fit.best.params.items())
    print(f"{what}: kernel {est.kernel.shape[0]} px, sigma {est.sigma:.2f} px")
    print(f"best model {fit.model}({params}), misfit {fit.best.rel_error:.2f}")
    for name, f in sorted(fit.fits.items(), key=lambda kv: kv[1].bic):
        print(f"   {name:8s} sigma {f.sigma:5.2f} px, misfit {f.rel_error:.2f}")
    save_figure(
        kernel_figure(est.kernel, title=f"{what}: {fit.model}({params})"),
        out / "kernel_from_pair.png",
        dpi=80,
    )

    # apply the kernel to a new image, and undo it on the blurred one
    new = data.moon()[::2, ::2]
    panels = {
        "blurred": blurry,
        "deblurred with the kernel (Wiener)": defocus.deblur(blurry, est.kernel),
        "a new image": new,
        "the new image ⊛ the kernel": defocus.blur(new, est.kernel),
    }
    fig = Figure(figsize=(9.0, 9.0), layout="constrained")
    for ax, (title, image) in zip(fig.subplots(2, 2).ravel(), panels.items(), strict=True):
        ax.imshow(to_display(image), cmap="gray")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    save_figure(fig, out / "kernel_apply_deblur.png", dpi=60)
    print(f"wrote {out / 'kernel_from_pair.png'} and {out / 'kernel_apply_deblur.png'}")


if __name__ == "__main__":
    main()
