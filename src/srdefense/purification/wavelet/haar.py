"""The Haar (2-tap) kernel of the transform: one DWT level as a 4x4 matrix on 2x2 blocks.

With 2 filter taps, one level of the symmetric-mode DWT is exactly a 4x4 matrix applied to the
four 2x2 polyphase components of the image (odd sizes extended by one symmetric sample, i.e.
replicated); the inverse is the synthesis matrix and the permutation back. This is much faster
on the CPU than the generic strided form of :mod:`.transform`, and equals it to rounding
(tested). :class:`HaarKernel` is the level in the form the engine (:mod:`.engine`) drives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .transform import _Taps
from .workspace import Buffers

_TWO_TAP: dict[tuple[object, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _two_tap_matrices(taps: _Taps, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """4x4 analysis and synthesis matrices of a 2-tap wavelet on 2x2 polyphase blocks.

    Polyphase order is ``pixel_unshuffle``'s (row parity, column parity); band order is
    (aa, da, ad, dd). With 2 taps, one DWT level is exactly this matrix on each 2x2 block.
    """
    key = ((taps.dec_lo, taps.dec_hi, taps.rec_lo, taps.rec_hi), dtype, device)
    hit = _TWO_TAP.get(key)
    if hit is None:
        # 1-D: [lo, hi] = A @ [x_even, x_odd]; [x_even, x_odd] = S @ [lo, hi]
        a1 = np.array([[taps.dec_lo[1], taps.dec_lo[0]], [taps.dec_hi[1], taps.dec_hi[0]]])
        s1 = np.array([[taps.rec_lo[0], taps.rec_hi[0]], [taps.rec_lo[1], taps.rec_hi[1]]])
        bands = [(0, 0), (1, 0), (0, 1), (1, 1)]
        phases = [(0, 0), (0, 1), (1, 0), (1, 1)]
        ana = np.array([[a1[p, i] * a1[q, j] for i, j in phases] for p, q in bands])
        syn = np.array([[s1[i, p] * s1[j, q] for p, q in bands] for i, j in phases])
        hit = (
            torch.as_tensor(ana, dtype=dtype, device=device),
            torch.as_tensor(syn, dtype=dtype, device=device),
        )
        _TWO_TAP[key] = hit
    return hit


def _to_polyphase(a: Tensor) -> Tensor:
    """(B, H, W), H and W even -> (B, 4, H/2 * W/2): the four 2x2 polyphase components."""
    b, hh, ww = a.shape
    return a.reshape(b, hh // 2, 2, ww // 2, 2).permute(0, 2, 4, 1, 3).reshape(b, 4, (hh // 2) * (ww // 2))


def _from_polyphase(p: Tensor, h: int, w: int) -> Tensor:
    """Inverse of :func:`_to_polyphase`: (B, 4, h * w) -> (B, 2h, 2w)."""
    b = p.shape[0]
    return p.reshape(b, 2, 2, h, w).permute(0, 3, 1, 4, 2).reshape(b, 2 * h, 2 * w)


def _to_polyphase_into(a: Tensor, out: Tensor) -> Tensor:
    """:func:`_to_polyphase` written into ``out`` (B, 4, H/2 * W/2)."""
    b, hh, ww = a.shape
    out.view(b, 2, 2, hh // 2, ww // 2).copy_(a.reshape(b, hh // 2, 2, ww // 2, 2).permute(0, 2, 4, 1, 3))
    return out


def _from_polyphase_into(p: Tensor, h: int, w: int, out: Tensor) -> Tensor:
    """:func:`_from_polyphase` written into ``out`` (B, 2h, 2w)."""
    b = p.shape[0]
    out.view(b, h, 2, w, 2).copy_(p.reshape(b, 2, 2, h, w).permute(0, 3, 1, 4, 2))
    return out


class HaarKernel:
    """One level of the 2-tap DWT of (B, H, W) planes, bands (B, 4, h, w) as (aa, da, ad, dd).

    With buffers (inference only) the level's polyphase components, coefficients and
    reconstruction are written into buffers reused across calls; the synthesis writes into
    the level's polyphase buffer, free again by then.
    """

    def __init__(self, taps: _Taps, dtype: torch.dtype, device: torch.device) -> None:
        self.ana, self.syn = _two_tap_matrices(taps, dtype, device)

    def analyze(self, a: Tensor, level: int, bufs: Buffers | None) -> Tensor:
        """One analysis level of (B, H, W) -> (B, 4, ceil(H/2), ceil(W/2))."""
        b, hh, ww = a.shape
        if hh % 2 or ww % 2:
            a = F.pad(a[:, None], (0, ww % 2, 0, hh % 2), mode="replicate")[:, 0]
            hh, ww = hh + hh % 2, ww + ww % 2
        if bufs is None:
            return torch.matmul(self.ana, _to_polyphase(a)).reshape(b, 4, hh // 2, ww // 2)
        shape = (b, 4, (hh // 2) * (ww // 2))
        poly = _to_polyphase_into(a, bufs.empty(("poly", level), shape, a))
        c = torch.matmul(self.ana, poly, out=bufs.empty(("coef", level), shape, a))
        return c.view(b, 4, hh // 2, ww // 2)

    def synthesize(self, c: Tensor, level: int, bufs: Buffers | None) -> Tensor:
        """One synthesis level of (B, 4, h, w) -> (B, 2h, 2w)."""
        b, _, ch, cw = c.shape
        if bufs is None:
            return _from_polyphase(torch.matmul(self.syn, c.reshape(b, 4, ch * cw)), ch, cw)
        shape = (b, 4, ch * cw)
        prod = torch.matmul(self.syn, c.reshape(shape), out=bufs.empty(("poly", level), shape, c))
        return _from_polyphase_into(prod, ch, cw, bufs.empty(("rec", level), (b, 2 * ch, 2 * cw), c))
