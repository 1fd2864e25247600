"""Argument checks and types shared by the wavelet transforms and the denoiser (a leaf module).

Every public entry point of :mod:`srdefense.purification.wavelet` validates its arguments here,
once, with errors that name the argument and say what was expected.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pywt
import torch
from torch import Tensor

#: Shrinkage rules and threshold modes accepted by the denoiser.
METHODS = ("BayesShrink", "VisuShrink")
MODES = ("soft", "hard")

WaveletLike = str | pywt.Wavelet
SigmaLike = float | Sequence[float] | None


@lru_cache(maxsize=128)
def _wavelet_by_name(name: str) -> pywt.Wavelet:
    return pywt.Wavelet(name)


def _resolve_wavelet(wavelet: object, name: str = "wavelet") -> pywt.Wavelet:
    """Return a discrete ``pywt.Wavelet`` or raise a ``ValueError`` naming the argument."""
    if isinstance(wavelet, pywt.Wavelet):
        return wavelet
    if not isinstance(wavelet, str):
        raise TypeError(
            f"{name}: expected a wavelet name (str) or a pywt.Wavelet, got {type(wavelet).__name__}"
        )
    try:
        return _wavelet_by_name(wavelet)
    except ValueError:
        raise ValueError(
            f"{name}: unknown wavelet {wavelet!r}; expected a discrete wavelet of "
            f"pywt.wavelist(kind='discrete'), e.g. 'db1' (Haar), 'db4', 'sym4', 'coif1', 'bior2.2'"
        ) from None


def _check_tensor(x: object, name: str, min_dim: int) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.ndim < min_dim:
        raise ValueError(f"{name}: expected at least {min_dim} dimensions, got {tuple(x.shape)}")
    return x


def _check_levels(levels: object, name: str, allow_zero: bool = False) -> int:
    lo = 0 if allow_zero else 1
    if isinstance(levels, bool) or not isinstance(levels, numbers.Integral) or int(levels) < lo:
        raise ValueError(f"{name}: expected an integer >= {lo} or None, got {levels!r}")
    return int(levels)


def _check_sigma(sigma: object, channels: int | None) -> tuple[float, ...] | float | None:
    msg = "sigma: expected None, a number >= 0, or a sequence of numbers >= 0 (one per channel)"
    if sigma is None:
        return None
    if isinstance(sigma, numbers.Real) and not isinstance(sigma, bool):
        s = float(sigma)
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"{msg}, got {sigma!r}")
        return s
    if isinstance(sigma, Tensor) and sigma.ndim == 0:
        return _check_sigma(float(sigma), channels)
    if isinstance(sigma, Sequence | np.ndarray | Tensor) and not isinstance(sigma, str):
        vals = []
        for v in sigma:
            if isinstance(v, Tensor) and v.ndim == 0:
                v = float(v)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{msg}, got {sigma!r}")
            if not (math.isfinite(float(v)) and float(v) >= 0):
                raise ValueError(f"{msg}, got {sigma!r}")
            vals.append(float(v))
        if channels is not None and len(vals) != channels:
            raise ValueError(f"sigma: expected {channels} values (one per channel), got {len(vals)}")
        if len(vals) == 0:
            raise ValueError(f"{msg}, got an empty sequence")
        return tuple(vals)
    raise ValueError(f"{msg}, got {sigma!r}")


def _check_options(
    wavelet: object,
    mode: object,
    wavelet_levels: object,
    method: object,
    convert2ycbcr: object,
    rescale_sigma: object,
    legacy_sigma: object,
    clip: object,
) -> pywt.Wavelet:
    w = _resolve_wavelet(wavelet)
    if mode not in MODES:
        raise ValueError(f"mode: expected 'soft' or 'hard', got {mode!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected 'BayesShrink' or 'VisuShrink', got {method!r}")
    if wavelet_levels is not None:
        _check_levels(wavelet_levels, "wavelet_levels")
    for name, v in (
        ("convert2ycbcr", convert2ycbcr),
        ("rescale_sigma", rescale_sigma),
        ("legacy_sigma", legacy_sigma),
    ):
        if not isinstance(v, bool):
            raise TypeError(f"{name}: expected a bool, got {v!r}")
    if clip is not None and not isinstance(clip, bool):
        raise TypeError(f"clip: expected a bool or None, got {clip!r}")
    return w
