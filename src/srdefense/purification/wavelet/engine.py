"""The one denoising engine: decompose, shrink each detail band, reconstruct, for any wavelet.

:func:`denoise_planes` is scikit-image's ``_wavelet_threshold`` on a batch of planes, driven by
a level kernel (:class:`~.transform.SymmetricKernel` for any wavelet, :class:`~.haar.HaarKernel`
for 2-tap ones) and the shrinkage rules of :mod:`.shrink`. :func:`_denoise_batch` maps image
channels to planes (:mod:`.channels`), runs the engine and maps back.

Float32 inference with a 2-tap wavelet and soft thresholding (the paper's setting) runs on a
compiled kernel where it was built (``_haar_native.c``, :func:`native_available`): it takes
each plane through every level while the plane is in the core's cache, where the PyTorch code
makes a pass over a block of planes per elementary step. Written by hand because no library
does this: PyWavelets and scikit-image transform one image per call, in float64, each level a
pass over the whole image, and PyTorch has no wavelet transform.
"""

from __future__ import annotations

from types import ModuleType

import pywt
import torch
from torch import Tensor

from ..color import rgb_to_ycbcr, rgb_to_ycbcr_fast, ycbcr_to_rgb_fast
from .channels import plain_planes, ycbcr_planes
from .haar import HaarKernel
from .shrink import _threshold, bayes_shrink, estimate_sigma_dwt, subband_variance, visu_shrink
from .transform import SymmetricKernel, _finest_diagonal_exact, _max_level, _Taps, _taps
from .workspace import Buffers, Workspace

Kernel = SymmetricKernel | HaarKernel

_native: ModuleType | None
try:
    from . import _haar_native as _native
except ImportError:  # not built: no C compiler at install time
    _native = None

USE_NATIVE = True
"""Whether :func:`denoise_planes` may use the compiled 2-tap kernel (see :func:`native_available`)."""


def native_available() -> bool:
    """Whether the compiled 2-tap kernel (``_haar_native.c``) was built and :data:`USE_NATIVE` is set.

    It then runs every float32 CPU inference call of :func:`denoise_planes` with a 2-tap wavelet
    and soft thresholding; the other calls (float64, hard mode, longer wavelets, autograd) run
    the PyTorch code, which it equals to float32 rounding.
    """
    return _native is not None and USE_NATIVE


def _native_fits(x: Tensor, kernel: Kernel, levels: int, mode: str, inplace: bool) -> bool:
    """Whether this :func:`denoise_planes` call can run on the compiled kernel."""
    return (
        native_available()
        and inplace
        and 1 <= levels <= 32
        and mode == "soft"
        and isinstance(kernel, HaarKernel)
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.dim() == 3
    )


def _native_denoise(
    x: Tensor,
    sigma: Tensor,
    scale: Tensor | None,
    kernel: HaarKernel,
    levels: int,
    method: str,
    bufs: Buffers | None,
) -> Tensor:
    """:func:`denoise_planes` on the compiled kernel (:func:`_native_fits` holds)."""
    assert _native is not None
    b, h, wd = x.shape
    x = x.contiguous()
    sig = sigma.to(torch.float32).contiguous()
    sc = None if scale is None else scale.to(torch.float32).contiguous()
    out = torch.empty_like(x) if bufs is None else bufs.empty(("native",), (b, h, wd), x)
    _native.denoise(
        x.data_ptr(),
        out.data_ptr(),
        sig.data_ptr(),
        0 if sc is None else sc.data_ptr(),
        b,
        h,
        wd,
        levels,
        kernel.ana.flatten().tolist(),
        kernel.syn.flatten().tolist(),
        method == "VisuShrink",
        torch.get_num_threads(),
    )
    return out


def level_kernel(taps: _Taps, dtype: torch.dtype, device: torch.device) -> Kernel:
    """The fastest exact level transform of a wavelet: the Haar kernel for 2 taps."""
    return HaarKernel(taps, dtype, device) if taps.length == 2 else SymmetricKernel(taps)


def default_levels(levels: int | None, shape: tuple[int, int], w: pywt.Wavelet) -> int:
    """scikit-image's default: ``max(pywt.dwtn_max_level(shape) - 3, 1)`` unless given."""
    return max(_max_level(shape, w) - 3, 1) if levels is None else levels


def denoise_planes(
    x: Tensor,
    sigma: Tensor,
    scale: Tensor | None,
    kernel: Kernel,
    levels: int,
    method: str,
    mode: str,
    bufs: Buffers | None = None,
) -> Tensor:
    """Wavelet shrinkage of planes (B, H, W) with noise levels ``sigma`` (B,).

    ``sigma`` is in units of ``x / scale``: thresholds are computed in those units (as
    scikit-image does on the [0, 1]-rescaled channel) and applied as ``t * scale`` to the
    coefficients of ``x``, which equals rescaling, denoising and scaling back. A ``scale`` of 0
    marks a plane to leave unchanged; ``scale=None`` means 1. Without autograd the fresh
    coefficients are thresholded in place, and with buffers ``bufs`` the level temporaries
    are reused across calls (the result may then be a view of one of them). Float32 CPU
    inference with a 2-tap kernel in soft mode runs on the compiled kernel where it was built
    (:func:`native_available`).
    """
    b, h, wd = x.shape
    inplace = not (torch.is_grad_enabled() and (x.requires_grad or sigma.requires_grad))
    if not inplace:
        bufs = None
    if _native_fits(x, kernel, levels, mode, inplace):
        assert isinstance(kernel, HaarKernel)
        return _native_denoise(x, sigma, scale, kernel, levels, method, bufs)
    a = x
    coeffs: list[Tensor] = []
    for level in range(levels):
        c = kernel.analyze(a, level, bufs)
        coeffs.append(c)
        a = c[:, 0]

    sig = sigma[:, None]
    var = sig * sig
    eps = torch.finfo(x.dtype).eps
    if scale is None:
        inv2 = None
        unit = torch.ones_like(sig)
    else:
        unit = scale[:, None]
        off = unit == 0
        u_safe = torch.where(off, torch.ones_like(unit), unit)
        inv2 = torch.where(off, torch.zeros_like(unit), 1.0 / (u_safe * u_safe))
    if method == "VisuShrink":
        t_univ = (visu_shrink(sig, h * wd) * unit).expand(b, 3)
    zero = torch.zeros_like(sig)
    rec: Tensor | None = None
    for level in range(len(coeffs) - 1, -1, -1):
        c = coeffs[level]
        ch, cw = c.shape[-2:]
        if method == "BayesShrink":
            dvar = subband_variance(c)
            if inv2 is not None:
                dvar = dvar * inv2
            t = bayes_shrink(dvar, var, eps) * unit
        else:
            t = t_univ
        if inplace and mode == "soft":  # no autograd graph: threshold the details in place
            det = c[:, 1:]
            tt = t[..., None, None]
            det.sub_(torch.clamp(det, min=-tt, max=tt))
            thr = c
        else:
            t = torch.cat([zero, t], dim=1)[..., None, None]  # approximation band: threshold 0 (kept)
            thr = _threshold(c, t, mode)
        if rec is not None:
            thr[:, 0] = rec[:, :ch, :cw]
        rec = kernel.synthesize(thr, level, bufs)
    assert rec is not None
    return rec[:, :h, :wd]


def _denoise_planes(
    x: Tensor, sigma: Tensor | None, w: pywt.Wavelet, method: str, mode: str, levels: int | None
) -> Tensor:
    """:func:`denoise_planes` with the generic (strided) kernel, sigma estimated if None."""
    taps = _taps(w, x.dtype)
    if sigma is None:
        sigma = estimate_sigma_dwt(_finest_diagonal_exact(x, taps))
    lv = default_levels(levels, (x.shape[-2], x.shape[-1]), w)
    return denoise_planes(x, sigma, None, SymmetricKernel(taps), lv, method, mode)


def _denoise_planes_two_tap(
    x: Tensor,
    sigma: Tensor,
    scale: Tensor | None,
    taps: _Taps,
    w: pywt.Wavelet,
    method: str,
    mode: str,
    levels: int | None,
    ws: Workspace | None = None,
) -> Tensor:
    """:func:`denoise_planes` with the Haar kernel (a 2-tap wavelet's ``taps``)."""
    lv = default_levels(levels, (x.shape[-2], x.shape[-1]), w)
    bufs = None if ws is None else Buffers(ws)
    return denoise_planes(x, sigma, scale, HaarKernel(taps, x.dtype, x.device), lv, method, mode, bufs)


def _denoise_batch(
    x: Tensor,
    s: Tensor | None,
    w: pywt.Wavelet,
    method: str,
    mode: str,
    wavelet_levels: int | None,
    convert2ycbcr: bool,
    rescale_sigma: bool,
    legacy_sigma: bool,
    clip: bool,
    bufs: Buffers | None = None,
    out: Tensor | None = None,
) -> Tensor:
    """``denoise_wavelet`` on a validated float32/float64 batch, sigma as (N, C) or None.

    With buffers ``bufs`` and a contiguous destination ``out`` of ``x``'s shape (no
    autograd), the temporaries come from the buffers and the result is written into ``out``
    (and returned); otherwise the result is a new tensor.
    """
    n, c, h, wd = x.shape
    reuse = bufs is not None
    if bufs is None or out is None or not out.is_contiguous() or out.shape != x.shape:
        bufs = out = None
    taps = _taps(w, x.dtype)
    kernel = level_kernel(taps, x.dtype, x.device)
    levels = default_levels(wavelet_levels, (h, wd), w)
    if convert2ycbcr:
        # the exact (FMA-ordered) conversion only where the noise estimate needs exact zeros
        if s is None:
            ycc = rgb_to_ycbcr(x)
        else:
            ycc = rgb_to_ycbcr_fast(x, None if bufs is None else bufs.empty(("ycc",), tuple(x.shape), x))
        planes, sig, unit, lo, hi = ycbcr_planes(ycc, s, taps, rescale_sigma, legacy_sigma)
        den = denoise_planes(planes, sig, unit, kernel, levels, method, mode, bufs).reshape(n, c, h, wd)
        if legacy_sigma:  # 0.15 clipped each rescaled channel to [0, 1], i.e. to [lo, hi] here
            lo4, hi4 = lo[..., None, None], hi[..., None, None]
            den = den.clamp_(min=lo4, max=hi4) if bufs is not None else torch.clamp(den, min=lo4, max=hi4)
        res = ycbcr_to_rgb_fast(den.contiguous(), out)
    else:
        planes, sig = plain_planes(x, s, taps)
        res = denoise_planes(planes, sig, None, kernel, levels, method, mode).reshape(n, c, h, wd)
    if clip and n > 0:
        neg = x.reshape(n, -1).amin(dim=1) < 0
        low = torch.where(neg, -1.0, 0.0).to(dtype=res.dtype, device=res.device).reshape(n, 1, 1, 1)
        if reuse:
            res = res.clamp_(min=low, max=torch.ones_like(low))
        else:
            res = torch.clamp(res, min=low, max=torch.ones_like(low))
    return res
