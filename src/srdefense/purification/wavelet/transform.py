"""The 2-D discrete wavelet transform in torch, as PyWavelets computes it (boundary 'symmetric').

One DWT level runs as strided slices of the half-sample symmetric extension, accumulated in
PyWavelets' order (``conv2d`` would round differently), on any device and floating dtype; only
the filter taps come from PyWavelets. Coefficient shapes and values equal PyWavelets'
(``pywt.dwt2``, ``pywt.wavedecn``, ``pywt.waverecn``), which scikit-image uses.

:class:`SymmetricKernel` is one level of this transform in the form the denoising engine
(:mod:`.engine`) drives; :mod:`.haar` is the same level for 2-tap wavelets as a 4x4 matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pywt
import torch
from torch import Tensor

from .options import WaveletLike, _check_levels, _check_tensor, _resolve_wavelet
from .workspace import Buffers

__all__ = ["SymmetricKernel", "dwt2", "idwt2", "wavedec2", "waverec2"]


def _filter_key(w: pywt.Wavelet) -> tuple[tuple[float, ...], ...]:
    return (tuple(w.dec_lo), tuple(w.dec_hi), tuple(w.rec_lo), tuple(w.rec_hi))


class _Taps:
    """Filter taps of one wavelet as Python floats rounded to one dtype (cheap to apply)."""

    __slots__ = ("dec_lo", "dec_hi", "rec_lo", "rec_hi", "length")

    def __init__(self, filters: tuple[tuple[float, ...], ...], dtype: torch.dtype) -> None:
        np_dtype = np.float32 if dtype in (torch.float32, torch.float16, torch.bfloat16) else np.float64
        conv = [tuple(float(v) for v in np.asarray(f, dtype=np_dtype)) for f in filters]
        self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi = conv
        self.length = len(self.dec_lo)


_TAPS: dict[tuple[object, torch.dtype], _Taps] = {}


def _taps(w: pywt.Wavelet, dtype: torch.dtype) -> _Taps:
    fkey = _filter_key(w)
    key = (fkey, dtype)
    hit = _TAPS.get(key)
    if hit is None:
        if len({len(f) for f in fkey}) != 1 or len(fkey[0]) < 2 or len(fkey[0]) % 2:
            raise ValueError(f"wavelet: filters of {w.name!r} must share one even length >= 2")
        hit = _TAPS[key] = _Taps(fkey, dtype)
    return hit


_PAD_INDEX: dict[tuple[int, int, int, torch.device], Tensor | None] = {}


def _symmetric_index(n: int, left: int, right: int, device: torch.device) -> Tensor | None:
    """Indices of PyWavelets' 'symmetric' extension of a length-``n`` axis (None: no padding).

    Half-sample symmetric extension, repeated as often as needed (... x1 x0 | x0 x1 ... xn-1 |
    xn-1 xn-2 ...), which is what PyWavelets does also when the extension exceeds ``n``.
    """
    if left == 0 and right == 0:
        return None
    key = (n, left, right, device)
    if key not in _PAD_INDEX:
        i = torch.arange(-left, n + right, dtype=torch.int64)
        m = torch.remainder(i, 2 * n)
        _PAD_INDEX[key] = torch.where(m < n, m, 2 * n - 1 - m).to(device)
    return _PAD_INDEX[key]


def _dwt_sizes(n: int, length: int) -> tuple[int, int, int]:
    """Output length and (left, right) extension of a one-level symmetric-mode DWT."""
    out = (n + length - 1) // 2
    return out, length - 2, 2 * out - n


# --------------------------------------------------------------------------------------------
# One-level and multi-level transforms on (B, H, W)
# --------------------------------------------------------------------------------------------


def _every_other(x: Tensor, dim: int, start: int, count: int) -> Tensor:
    """``x[start : start + 2 * count - 1 : 2]`` along ``dim`` (-2 or -1), a view."""
    x = x.narrow(dim, start, 2 * count - 1)
    return x[..., ::2, :] if dim == -2 else x[..., ::2]


def _dwt_axis(x: Tensor, taps: _Taps, dim: int, high_only: bool = False) -> tuple[Tensor, Tensor]:
    """One-level symmetric-mode DWT of ``x`` along ``dim`` (-2 or -1): (low, high).

    Computed as PyWavelets' C loop does, ``sum_j f[j] * x_ext[2k + 1 - j]`` accumulated with
    ``j`` ascending and without fused multiply-add, so that coefficients that PyWavelets
    computes as exact zeros (which the noise estimate masks out) are exact zeros here too.
    """
    length = taps.length
    n = x.shape[dim]
    out, pad_lo, pad_hi = _dwt_sizes(n, length)
    idx = _symmetric_index(n, pad_lo, pad_hi, x.device)
    if idx is not None:
        x = x.index_select(dim, idx)
    slices = [_every_other(x, dim, length - 1 - j, out) for j in range(length)]
    res = []
    for f in (taps.dec_lo, taps.dec_hi):
        if high_only and f is taps.dec_lo:
            res.append(slices[0])  # placeholder, not computed
            continue
        acc = slices[0] * f[0]
        for j in range(1, length):
            acc = acc + slices[j] * f[j]
        res.append(acc)
    return res[0], res[1]


def _finest_diagonal_exact(x: Tensor, taps: _Taps) -> Tensor:
    """The level-1 'dd' band of (B, H, W), rounded exactly as PyWavelets computes it."""
    _, hi = _dwt_axis(x, taps, -2, high_only=True)
    _, hh = _dwt_axis(hi, taps, -1, high_only=True)
    return hh


def _idwt_axis(lo: Tensor, hi: Tensor, taps: _Taps, dim: int) -> Tensor:
    """One-level inverse DWT along ``dim`` (-2 or -1), PyWavelets' output size ``2n - L + 2``.

    Polyphase form of ``pywt.idwt``: even outputs use the even-offset synthesis taps, odd
    outputs the odd ones, then the two phases are interleaved.
    """
    length = taps.length
    half = length // 2
    m = lo.shape[dim] - half + 1
    phases = []
    for q in (0, 1):
        acc: Tensor | None = None
        for t in range(half):
            k = length - 2 + q - 2 * t
            term = torch.add(
                lo.narrow(dim, t, m) * taps.rec_lo[k], hi.narrow(dim, t, m), alpha=taps.rec_hi[k]
            )
            acc = term if acc is None else acc + term
        assert acc is not None
        phases.append(acc)
    if dim == -1:
        return torch.stack(phases, dim=-1).flatten(-2)
    return torch.stack(phases, dim=-2).flatten(-3, -2)


def _dwt2_core(x: Tensor, taps: _Taps) -> Tensor:
    """One DWT level of (B, H, W) -> (B, 4, h, w), bands (aa, da, ad, dd).

    Height axis first, then width, as ``pywt.dwtn``.
    """
    lo, hi = _dwt_axis(x, taps, -2)
    lo2, hi2 = _dwt_axis(torch.stack([lo, hi], dim=1), taps, -1)  # (aa, da), (ad, dd)
    return torch.cat([lo2, hi2], dim=1)


def _idwt2_core(c: Tensor, taps: _Taps) -> Tensor:
    """One inverse level of (B, 4, h, w), bands (aa, da, ad, dd) -> (B, 2h - L + 2, 2w - L + 2)."""
    r = _idwt_axis(c[:, 0:2], c[:, 2:4], taps, -1)  # (a., d.) along height
    return _idwt_axis(r[:, 0], r[:, 1], taps, -2)


def _as_batch(x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
    lead = tuple(x.shape[:-2])
    return x.reshape(-1, x.shape[-2], x.shape[-1]), lead


def dwt2(x: Tensor, wavelet: WaveletLike = "db1") -> tuple[Tensor, Tensor]:
    r"""One level of the 2-D DWT over the last two axes, as ``pywt.dwt2(x, wavelet)``.

    Boundary mode 'symmetric' (PyWavelets' default).

    Args:
        x: float tensor, the transform runs over its last two axes.
        wavelet: a discrete PyWavelets wavelet name or ``pywt.Wavelet``.

    Returns:
        ``(approx, details)``: the approximation band and the detail bands stacked on a new
        axis in PyWavelets' ``dwt2`` order (horizontal ``'da'``, vertical ``'ad'``,
        diagonal ``'dd'``).

    Shape:
        - Input: :math:`(*, H, W)`
        - Output: :math:`(*, h, w)` and :math:`(*, 3, h, w)` with
          :math:`h = \lfloor (H + L - 1) / 2 \rfloor` for filter length :math:`L`.

    Example:
        >>> a, d = dwt2(torch.ones(1, 4, 4))
        >>> a.shape, d.shape
        (torch.Size([1, 2, 2]), torch.Size([1, 3, 2, 2]))
    """
    _check_tensor(x, "x", 2)
    w = _resolve_wavelet(wavelet)
    xb, lead = _as_batch(x)
    c = _dwt2_core(xb, _taps(w, x.dtype))
    return c[:, 0].reshape(*lead, *c.shape[-2:]), c[:, 1:].reshape(*lead, 3, *c.shape[-2:])


def idwt2(approx: Tensor, details: Tensor, wavelet: WaveletLike = "db1") -> Tensor:
    """One level of the inverse 2-D DWT, as ``pywt.idwt2((approx, details), wavelet)``.

    Args:
        approx: approximation band.
        details: detail bands in :func:`dwt2`'s order, same spatial size as ``approx``.
        wavelet: the wavelet of the forward transform.

    Returns:
        The reconstruction, of size :math:`2h - L + 2` along each axis (PyWavelets' size; one
        more than an odd original size, which the caller crops).

    Shape:
        - Input: :math:`(*, h, w)` and :math:`(*, 3, h, w)`
        - Output: :math:`(*, 2h - L + 2, 2w - L + 2)`

    Example:
        >>> x = torch.rand(2, 6, 6, dtype=torch.float64)
        >>> torch.allclose(idwt2(*dwt2(x, "db2"), "db2"), x)
        True
    """
    _check_tensor(approx, "approx", 2)
    _check_tensor(details, "details", 3)
    if details.shape != (*approx.shape[:-2], 3, *approx.shape[-2:]):
        raise ValueError(
            f"details: expected shape {(*approx.shape[:-2], 3, *approx.shape[-2:])} to match "
            f"approx {tuple(approx.shape)}, got {tuple(details.shape)}"
        )
    w = _resolve_wavelet(wavelet)
    lead = tuple(approx.shape[:-2])
    h, wd = approx.shape[-2:]
    c = torch.cat([approx.reshape(-1, 1, h, wd), details.reshape(-1, 3, h, wd)], dim=1)
    y = _idwt2_core(c, _taps(w, approx.dtype))
    return y.reshape(*lead, *y.shape[-2:])


def _max_level(shape: tuple[int, int], w: pywt.Wavelet) -> int:
    return int(pywt.dwtn_max_level(shape, w))


def wavedec2(x: Tensor, wavelet: WaveletLike = "db1", level: int | None = None) -> list[Tensor]:
    """Multi-level 2-D DWT over the last two axes, as ``pywt.wavedec2`` / ``pywt.wavedecn``.

    Args:
        x: float tensor.
        wavelet: a discrete PyWavelets wavelet name or ``pywt.Wavelet``.
        level: number of levels (default: ``pywt.dwtn_max_level``).

    Returns:
        ``[approx_n, details_n, ..., details_1]``, coarsest first as in PyWavelets, each
        ``details_j`` of shape (*, 3, h_j, w_j) in :func:`dwt2`'s band order.

    Shape:
        - Input: :math:`(*, H, W)`

    Example:
        >>> coeffs = wavedec2(torch.rand(1, 3, 32, 32), "db1", level=2)
        >>> [tuple(c.shape) for c in coeffs]
        [(1, 3, 8, 8), (1, 3, 3, 8, 8), (1, 3, 3, 16, 16)]
    """
    _check_tensor(x, "x", 2)
    w = _resolve_wavelet(wavelet)
    if level is None:
        level = _max_level((x.shape[-2], x.shape[-1]), w)
    _check_levels(level, "level", allow_zero=True)
    taps = _taps(w, x.dtype)
    a, lead = _as_batch(x)
    details: list[Tensor] = []
    for _ in range(level):
        c = _dwt2_core(a, taps)
        a = c[:, 0]
        details.append(c[:, 1:].reshape(*lead, 3, *c.shape[-2:]))
    return [a.reshape(*lead, *a.shape[-2:]), *details[::-1]]


def waverec2(coeffs: Sequence[Tensor], wavelet: WaveletLike = "db1") -> Tensor:
    """Multi-level inverse 2-D DWT, as ``pywt.waverecn`` (coarse approximations cropped).

    Args:
        coeffs: ``[approx_n, details_n, ..., details_1]`` as returned by :func:`wavedec2`.
        wavelet: the wavelet of the forward transform.

    Returns:
        The reconstruction; for odd input sizes it has one extra row/column, as in
        PyWavelets (crop with ``[..., :H, :W]``).

    Example:
        >>> x = torch.rand(2, 3, 17, 20, dtype=torch.float64)
        >>> y = waverec2(wavedec2(x, "db4", level=2), "db4")[..., :17, :20]
        >>> torch.allclose(y, x)
        True
    """
    if len(coeffs) < 1:
        raise ValueError("coeffs: expected at least the approximation band")
    a = _check_tensor(coeffs[0], "coeffs[0]", 2)
    for j, d in enumerate(coeffs[1:], start=1):
        _check_tensor(d, f"coeffs[{j}]", 3)
        h, wd = d.shape[-2:]
        if not (0 <= a.shape[-2] - h <= 1 and 0 <= a.shape[-1] - wd <= 1):
            raise ValueError(
                f"coeffs[{j}]: detail size {(h, wd)} incompatible with approximation "
                f"size {tuple(a.shape[-2:])}"
            )
        a = idwt2(a[..., :h, :wd], d, wavelet)
    return a


class SymmetricKernel:
    """One level of the symmetric-mode DWT of (B, H, W) planes, for any discrete wavelet.

    ``analyze`` gives the bands (B, 4, h, w) in the order (aa, da, ad, dd); ``synthesize`` is
    the inverse, of PyWavelets' size (the caller crops). Buffers are not used: every level's
    coefficients are fresh tensors.
    """

    def __init__(self, taps: _Taps) -> None:
        self.taps = taps

    def analyze(self, a: Tensor, level: int, bufs: Buffers | None) -> Tensor:
        """One analysis level of (B, H, W) -> (B, 4, h, w)."""
        return _dwt2_core(a, self.taps)

    def synthesize(self, c: Tensor, level: int, bufs: Buffers | None) -> Tensor:
        """One synthesis level of (B, 4, h, w) -> (B, 2h - L + 2, 2w - L + 2)."""
        return _idwt2_core(c, self.taps)
