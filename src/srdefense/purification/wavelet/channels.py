"""The one mapping from image channels to denoised planes and their noise levels.

Without YCbCr every channel of every image is one plane and its sigma is the caller's. With
YCbCr (scikit-image's ``convert2ycbcr``), each YCbCr channel of each image is rescaled to
[0, 1] by its own min and max before denoising. That rescaling is folded into the thresholds
instead of applied to a copy of the image: sigma and the thresholds are in units of the
rescaled channel, and each plane carries its channel's range as a ``scale`` by which the
thresholds are multiplied before they are applied to the YCbCr coefficients (a linear
transform commutes with the rescaling). A constant channel gets scale 0: left unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..color import YCBCR_FROM_RGB
from .shrink import estimate_sigma_dwt
from .transform import _finest_diagonal_exact, _Taps


def _sigma_tensor(sigma: tuple[float, ...] | float | None, n: int, c: int, like: Tensor) -> Tensor | None:
    """Per-(image, channel) sigma as an (n, c) tensor of ``like``'s dtype/device, or None."""
    if sigma is None:
        return None
    if isinstance(sigma, float):
        sigma = (sigma,) * c
    if len(sigma) != c:
        raise ValueError(f"sigma: expected {c} values (one per channel), got {len(sigma)}")
    return torch.tensor(sigma, dtype=like.dtype, device=like.device).expand(n, c)


def _sigma_in_ycbcr(s: Tensor, safe: Tensor, rescale_sigma: bool, legacy_sigma: bool) -> Tensor:
    """Sigma (N, 3) of the RGB input -> sigma of each [0, 1]-rescaled YCbCr channel."""
    if legacy_sigma:
        return s
    if rescale_sigma:
        m2 = torch.as_tensor(YCBCR_FROM_RGB**2, dtype=s.dtype, device=s.device)
        s = torch.sqrt((s * s) @ m2.T)
    return s / safe


def plain_planes(x: Tensor, s: Tensor | None, taps: _Taps) -> tuple[Tensor, Tensor]:
    """Channels of (N, C, H, W) as planes (N C, H, W) and their sigma (N C,), estimated if None."""
    n, c, h, wd = x.shape
    planes = x.reshape(n * c, h, wd)
    if s is None:
        return planes, estimate_sigma_dwt(_finest_diagonal_exact(planes, taps))
    return planes, s.reshape(n * c)


def ycbcr_planes(
    ycc: Tensor, s: Tensor | None, taps: _Taps, rescale_sigma: bool, legacy_sigma: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """YCbCr images (N, 3, H, W) -> planes, sigma, scale (all per plane) and each channel's range.

    Returns ``(planes, sigma, scale, lo, hi)``: the YCbCr channels as planes (3N, H, W), sigma
    (3N,) in units of the [0, 1]-rescaled channel, the channel ranges as scales (3N,; 0 for a
    constant channel), and the channel minima and maxima (N, 3). A noise estimate (``s is
    None``) is made on the rescaled channel, whose finest diagonal band is rounded exactly as
    scikit-image's (the estimate masks exact zeros).
    """
    n, c, h, wd = ycc.shape
    flat_ycc = ycc.reshape(n, c, h * wd)
    lo, hi = flat_ycc.amin(dim=-1), flat_ycc.amax(dim=-1)
    scale = hi - lo
    flat = scale == 0
    safe = torch.where(flat, torch.ones_like(scale), scale)
    if s is None:
        z = (ycc - lo[..., None, None]) / safe[..., None, None]
        s = estimate_sigma_dwt(_finest_diagonal_exact(z.reshape(n * c, h, wd), taps)).reshape(n, c)
    else:
        s = _sigma_in_ycbcr(s, safe, rescale_sigma, legacy_sigma)
    unit = torch.where(flat, torch.zeros_like(scale), scale)
    return ycc.reshape(n * c, h, wd), s.reshape(n * c), unit.reshape(n * c), lo, hi
