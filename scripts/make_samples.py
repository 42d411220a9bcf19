"""Make the synthetic tilted-sample demo image shipped in src/defocus/data (deterministic).

The sharp source is scikit-image's ``gravel`` texture (CC0). It is blurred with a known sigma map
from :func:`defocus.synth.tilt_map`, as a sample tilted about a horizontal axis would be: sharp in
a band 40 % down from the top (60 % from the bottom, as in the SEM question), tilted by 4
degrees, with blur growing linearly away from it. Shot noise is added as an SEM would. The true
sigma map is not shipped: ``defocus.data.tilted_gravel()`` recomputes it from the same
parameters, kept in ``defocus.data.TILTED_GRAVEL``.

Run: python scripts/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import data

from defocus.data import TILTED_GRAVEL
from defocus.io import write_image
from defocus.synth import add_poisson_noise, blur_varying, tilt_map

OUT = Path(__file__).resolve().parents[1] / "src" / "defocus" / "data"


def main() -> None:
    sharp = data.gravel().astype(np.float32)
    sigma = tilt_map(sharp.shape, **TILTED_GRAVEL["tilt"])
    blurred = blur_varying(sharp, sigma, psf="gauss", method="scatter")
    # 900 electrons per pixel at mid grey (signal-to-noise 30): SEM-like shot noise
    noisy = add_poisson_noise(blurred, counts_per_unit=900 / 128, rng=20261121)
    image = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    write_image(OUT / "tilted_gravel.tif", image, pixel_size=TILTED_GRAVEL["pixel_size"])
    print(f"sigma {sigma.min():.2f}-{sigma.max():.2f} px -> {OUT}")


if __name__ == "__main__":
    main()
