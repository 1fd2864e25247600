"""Shrinkage rules shared by every wavelet of the denoiser: noise estimate, thresholds, modes.

* noise estimate (Donoho & Johnstone): ``median(|d|) / 0.6745`` over the non-zero coefficients
  of the finest diagonal band, numpy's median convention, as scikit-image's ``_sigma_est_dwt``;
* BayesShrink (Chang, Yu, Vetterli 2000): per sub-band ``sigma**2 / sqrt(max(var(d) - sigma**2,
  eps))``;
* VisuShrink (Donoho & Johnstone 1994): one universal threshold ``sigma * sqrt(2 log(H W))``;
* soft (``sign(d) max(|d| - t, 0)``) or hard (keep ``|d| >= t``) thresholding, as PyWavelets.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .options import _check_tensor

__all__ = ["bayes_shrink", "estimate_sigma_dwt", "subband_variance", "visu_shrink"]

#: ``scipy.stats.norm.ppf(0.75)``: the MAD of a standard normal variable.
_MAD_TO_SIGMA = 0.6744897501960817


def _median_nonzero_abs(d: Tensor) -> Tensor:
    """Median (numpy convention) of the non-zero entries of ``|d|`` per row of (B, n); 0 if none."""
    v = d.abs()
    s, _ = torch.sort(v, dim=1)
    n = s.shape[1]
    nz = (v != 0).sum(dim=1)
    start = n - nz  # zeros sort first
    lo = (start + (nz - 1).clamp(min=0) // 2).clamp(max=max(n - 1, 0))
    hi = (start + nz // 2).clamp(max=max(n - 1, 0))
    med = 0.5 * (s.gather(1, lo[:, None]) + s.gather(1, hi[:, None])).squeeze(1)
    return torch.where(nz > 0, med, torch.zeros_like(med))


def estimate_sigma_dwt(finest_diagonal: Tensor) -> Tensor:
    """Robust noise estimate of Donoho & Johnstone: ``median(|d|) / 0.6745`` per image.

    Exactly scikit-image's ``_sigma_est_dwt``: exact zeros are masked out and the median of an
    even count averages the two middle values. Where no coefficient is non-zero the estimate is
    0 (scikit-image returns NaN there).

    Args:
        finest_diagonal: the finest-level diagonal ('dd') detail band.

    Returns:
        Estimated noise standard deviation per leading index.

    Shape:
        - Input: :math:`(*, h, w)`
        - Output: :math:`(*)`

    Example:
        >>> estimate_sigma_dwt(torch.tensor([[[0.0, 1.0], [-2.0, 3.0]]])).shape
        torch.Size([1])
    """
    _check_tensor(finest_diagonal, "finest_diagonal", 2)
    lead = finest_diagonal.shape[:-2]
    d = finest_diagonal.reshape(-1, finest_diagonal.shape[-2] * finest_diagonal.shape[-1])
    return (_median_nonzero_abs(d) / _MAD_TO_SIGMA).reshape(lead)


def _threshold(d: Tensor, t: Tensor, mode: str) -> Tensor:
    """PyWavelets' soft (``sign(d) max(|d| - t, 0)``) or hard (keep ``|d| >= t``) threshold."""
    if mode == "soft":
        return d - torch.clamp(d, min=-t, max=t)
    return d * (d.abs() >= t).to(d.dtype)


def subband_variance(c: Tensor) -> Tensor:
    """Mean square of each detail band of level coefficients (B, 4, h, w): (B, 3)."""
    b, _, ch, cw = c.shape
    return torch.linalg.vector_norm(c[:, 1:].reshape(b, 3, ch * cw), dim=-1).square() / (ch * cw)


def bayes_shrink(band_variance: Tensor, noise_variance: Tensor, eps: float) -> Tensor:
    """BayesShrink threshold ``sigma**2 / sqrt(max(var(d) - sigma**2, eps))`` per band."""
    return noise_variance / torch.sqrt(torch.clamp(band_variance - noise_variance, min=eps))


def visu_shrink(sigma: Tensor, n_pixels: int) -> Tensor:
    """VisuShrink's universal threshold ``sigma * sqrt(2 log n)`` for an image of ``n`` pixels."""
    return sigma * math.sqrt(2.0 * math.log(n_pixels))
