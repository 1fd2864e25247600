"""The paper's pipeline and its ablations, registered as named defenses.

Mustafa, Khan, Hayat, Shen, Shao, "Image Super-Resolution as a Defense Against Adversarial
Attacks", IEEE TIP 29 (2020) 1711-1724: wavelet denoising (BayesShrink, soft, YCbCr, db1,
sigma 0.01), then deep super-resolution x2; the classifier receives the 2x image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from .base import Identity, Purifier
from .compose import Compose, ResizeBack, resolution_policy
from .jpeg import JPEG
from .learned_denoise import denoising_stages
from .registry import register_defense
from .superres import SuperResolve
from .wavelet import WaveletDenoise

PAPER = "Mustafa et al., Image Super-Resolution as a Defense Against Adversarial Attacks, IEEE TIP 2020"

Resolution = Literal["purified", "2x", "native"]
"""The resolution policy (:func:`~.compose.resolution_policy`); ``"2x"`` is the old name of ``"purified"``."""


class UInt8Quantize(Purifier):
    """Quantise to 8 bits and back, as saving an image file does (no gradient; BPDA identity).

    Args:
        rounding: ``"round"`` (to nearest, as EDSR-PyTorch's ``quantize`` before saving the PNG)
            or ``"floor"`` (truncation, as matplotlib's ``imsave`` converts float images).
    """

    differentiable = False
    reference = "hidden step of the official code (uint8 image files)"

    def __init__(self, rounding: str = "round") -> None:
        super().__init__()
        if rounding not in ("round", "floor"):
            raise ValueError(f"rounding: expected 'round' or 'floor', got {rounding!r}")
        self.rounding = rounding

    def purify(self, x: Tensor) -> Tensor:
        """``round(255 x) / 255`` or ``floor(255 x) / 255`` on values clamped to [0, 1]."""
        y = x.clamp(0, 1) * 255
        y = torch.round(y) if self.rounding == "round" else torch.floor(y)
        return y / 255

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"rounding={self.rounding!r}"


def _resolution_stage(resolution: str, factor: int) -> list[Purifier]:
    return [ResizeBack(factor)] if resolution_policy(resolution) == "native" else []


def _sr_stages(
    sr_model: str,
    sr_weights: str | Path | None,
    tile_size: int | None,
    resolution: str,
    sr_weights_sha256: str | None = None,
    precision: str = "fp32",
) -> list[Purifier]:
    """Super-resolution followed by the resolution policy's stage (if any)."""
    if sr_weights_sha256 is not None and sr_weights is None:
        raise ValueError("sr_weights_sha256: pins the file given as sr_weights, and none was given")
    pin: dict[str, Any] = {} if sr_weights_sha256 is None else {"sha256": sr_weights_sha256}
    sr = SuperResolve(sr_model, weights=sr_weights, tile_size=tile_size, precision=precision, **pin)
    return [sr, *_resolution_stage(resolution, sr.scale)]


def paper_defense(
    *,
    sigma: float | None = 0.01,
    wavelet: str = "db1",
    method: str = "BayesShrink",
    mode: str = "soft",
    convert2ycbcr: bool = True,
    legacy_sigma: bool = True,
    sr_model: str = "upconv7",
    sr_weights: str | Path | None = None,
    resolution: Resolution = "purified",
    tile_size: int | None = None,
    precision: str = "fp32",
    denoiser: str = "wavelet",
    denoiser_weights: str | Path | None = None,
    sr_weights_sha256: str | None = None,
) -> Compose:
    """The paper's defense: wavelet denoising, then super-resolution x2.

    Defaults are the paper's settings as its official code ran them: ``sigma=0.01``, Haar
    (``db1``) wavelet, BayesShrink, soft thresholding, on YCbCr with each channel rescaled to
    [0, 1], sigma in scikit-image <= 0.15 units (``legacy_sigma=True``, the version the paper
    ran), then x2 super-resolution; the classifier receives the 2x image.

    Args:
        sigma: noise standard deviation for the thresholds; ``None`` estimates it per image.
        wavelet: any discrete wavelet PyWavelets knows.
        method: ``"BayesShrink"`` or ``"VisuShrink"``.
        mode: ``"soft"`` or ``"hard"`` thresholding.
        convert2ycbcr: denoise in YCbCr (as the paper) instead of RGB.
        legacy_sigma: scikit-image <= 0.15 sigma semantics (see :func:`denoise_wavelet`).
        sr_model: super-resolution backend (``srdefense list sr``); the paper used EDSR-baseline,
            the embedded default is waifu2x ``upconv7`` (EDSR weights are loaded from
            ``sr_weights`` when given).
        sr_weights: weight file for the backend (required for ``edsr``). The module that
            loads it records the file's sha256 (:func:`srdefense.weights_fingerprint`).
        resolution: ``"purified"`` (alias ``"2x"``) classifies the 2x image (the paper);
            ``"native"`` resizes it back to the input size with antialiasing.
        tile_size: process super-resolution in tiles of this many input pixels.
        precision: super-resolution arithmetic, ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` or
            ``"auto"`` (see :mod:`srdefense.purification.precision`).
        denoiser: ``"wavelet"`` (the paper), ``"spandrel"`` (a learned denoiser from
            ``denoiser_weights`` replaces it), ``"wavelet+spandrel"`` (the learned denoiser
            follows it) or ``"none"``; see :mod:`srdefense.purification.learned_denoise`.
        denoiser_weights: checkpoint of the learned denoiser (DnCNN, DRUNet, SCUNet, FBCNN).
        sr_weights_sha256: pin for ``sr_weights`` (full digest or >= 8 hex digits); a file
            with another digest raises ``WeightsError`` naming the file and both digests.

    Returns:
        A :class:`Compose` purifier; differentiable end to end.

    Example:
        >>> defense = paper_defense()
        >>> defense.scale
        2
    """

    def wd() -> WaveletDenoise:
        return WaveletDenoise(
            sigma=sigma,
            wavelet=wavelet,
            method=method,
            mode=mode,
            convert2ycbcr=convert2ycbcr,
            legacy_sigma=legacy_sigma,
        )

    denoise = denoising_stages(denoiser, denoiser_weights, wd)
    return Compose(
        *denoise, *_sr_stages(sr_model, sr_weights, tile_size, resolution, sr_weights_sha256, precision)
    )


@register_defense("none", reference="no defense", description="the undefended classifier")
def _none() -> Purifier:
    return Identity()


register_defense(
    "paper",
    reference=PAPER,
    description="wavelet denoising (BayesShrink, soft, YCbCr, db1, sigma 0.01) then SR x2",
)(paper_defense)


@register_defense(
    "paper-faithful",
    reference=PAPER + " (official code's hidden steps made explicit)",
    description="paper + JPEG save of the denoised image (matplotlib, q75) + uint8 SR output",
    fast=False,  # a second SR network pass per image: the demo keeps one SR defense, paper
)
def _paper_faithful(
    sigma: float | None = 0.01,
    jpeg_quality: int = 75,
    sr_model: str = "upconv7",
    sr_weights: str | None = None,
    resolution: Resolution = "purified",
    tile_size: int | None = None,
    sr_weights_sha256: str | None = None,
    precision: str = "fp32",
) -> Purifier:
    """The official code as it runs: denoise, save as JPEG, super-resolve, save as uint8 PNG.

    matplotlib's ``imsave`` truncates the float image to uint8 and writes a JPEG with PIL's
    default quality 75; EDSR-PyTorch rounds its output to uint8 before saving the PNG.
    """
    sr, *policy = _sr_stages(sr_model, sr_weights, tile_size, resolution, sr_weights_sha256, precision)
    return Compose(
        WaveletDenoise(sigma=sigma, convert2ycbcr=True, legacy_sigma=True),
        UInt8Quantize("floor"),
        JPEG(quality=jpeg_quality),
        sr,
        UInt8Quantize("round"),
        *policy,
    )


@register_defense(
    "wd",
    reference=PAPER + " (ablation: wavelet denoising only)",
    description="wavelet denoising only, the paper's settings",
)
def _wd(
    sigma: float | None = 0.01,
    wavelet: str = "db1",
    method: str = "BayesShrink",
    mode: str = "soft",
    convert2ycbcr: bool = True,
    legacy_sigma: bool = True,
) -> Purifier:
    return WaveletDenoise(
        sigma=sigma,
        wavelet=wavelet,
        method=method,
        mode=mode,
        convert2ycbcr=convert2ycbcr,
        legacy_sigma=legacy_sigma,
    )


@register_defense(
    "sr",
    reference=PAPER + " (ablation: super-resolution only)",
    description="super-resolution x2 only",
    fast=False,  # as paper-faithful; in --defense ablations
)
def _sr(
    sr_model: str = "upconv7",
    sr_weights: str | None = None,
    resolution: Resolution = "purified",
    tile_size: int | None = None,
    sr_weights_sha256: str | None = None,
    precision: str = "fp32",
) -> Purifier:
    stages = _sr_stages(sr_model, sr_weights, tile_size, resolution, sr_weights_sha256, precision)
    return Compose(*stages) if len(stages) > 1 else stages[0]


def _interp(mode: str) -> None:
    @register_defense(
        mode,
        reference=PAPER + f" (ablation: {mode} x2 interpolation in place of super-resolution)",
        description=f"{mode} x2 interpolation (wd=true: after wavelet denoising, as paper:sr_model={mode})",
    )
    def factory(
        wd: bool = False,
        sigma: float | None = 0.01,
        legacy_sigma: bool = True,
        resolution: Resolution = "purified",
    ) -> Purifier:
        if wd:  # the paper's pipeline with interpolation in place of super-resolution
            return paper_defense(sigma=sigma, legacy_sigma=legacy_sigma, sr_model=mode, resolution=resolution)
        return _sr(sr_model=mode, resolution=resolution)


for _m in ("nearest", "bicubic"):
    _interp(_m)
