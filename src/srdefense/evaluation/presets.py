"""Named groups of defense specs: the paper's comparison order and the ablations of its pipeline.

A leaf module (nothing from srdefense): :mod:`.config` expands ``--defense ablations`` from it and
:mod:`.comparison` lays out the report's tables with it.
"""

from __future__ import annotations

#: Row order of the paper's comparison tables (Mustafa et al. 2020, Tables III-V): no defense,
#: the competing input transformations, the interpolation baselines, then the proposed defense.
PAPER_ORDER: tuple[str, ...] = (
    "none",
    "jpeg",
    "bit-depth",
    "median",
    "feature-squeezing",
    "random-resize-pad",
    "tvm",
    "quilting",
    "pixel-deflection",
    "nearest",
    "bicubic",
    "paper",
)

#: The ablations of the paper's pipeline, as defense specs, with what each one changes.
ABLATIONS: dict[str, str] = {
    "wd": "wavelet denoising only",
    "sr": "super-resolution only",
    "paper": "the paper's pipeline (sigma 0.01, db1, BayesShrink, soft, YCbCr, then SR x2)",
    "paper:sr_model=nearest": "nearest x2 in place of super-resolution",
    "paper:sr_model=bicubic": "bicubic x2 in place of super-resolution",
    "paper-faithful": "the official code's hidden steps: JPEG save (q75) + uint8 SR output",
    "paper:resolution=native": "classified at the native size (antialiased back from 2x)",
    "paper:sigma=0": "sigma 0 (no thresholding)",
    "paper:sigma=0.02": "sigma 0.02",
    "paper:sigma=0.03": "sigma 0.03",
    "paper:sigma=0.04": "sigma 0.04",
    "paper:sigma=none": "sigma estimated from each image",
}
