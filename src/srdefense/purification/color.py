"""RGB <-> YCbCr conversion in torch, identical to scikit-image's ``rgb2ycbcr`` / ``ycbcr2rgb``.

scikit-image uses the ITU-R BT.601 "studio swing" matrix on float RGB in [0, 1]: the result has
Y in [16, 235] and Cb, Cr in [16, 240] (not rescaled to [0, 1]). The inverse matrix is the
float64 inverse of the forward one, as in scikit-image.

:func:`rgb_to_ycbcr` / :func:`ycbcr_to_rgb` accumulate in numpy's order (bit-equal pixels stay
bit-equal); the ``_fast`` variants are one batched matrix product each, for callers that do not
need that (last-bit rounding may differ), optionally written into a given buffer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "YCBCR_FROM_RGB",
    "YCBCR_OFFSET",
    "RGB_FROM_YCBCR",
    "rgb_to_ycbcr",
    "rgb_to_ycbcr_fast",
    "ycbcr_to_rgb",
    "ycbcr_to_rgb_fast",
]

#: Forward matrix (rows: Y, Cb, Cr), the same as ``skimage.color.colorconv.ycbcr_from_rgb``.
YCBCR_FROM_RGB: np.ndarray = np.array(
    [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]],
    dtype=np.float64,
)
#: Offsets added after the matrix product (Y, Cb, Cr).
YCBCR_OFFSET: np.ndarray = np.array([16.0, 128.0, 128.0], dtype=np.float64)
#: Inverse matrix, ``skimage.color.colorconv.rgb_from_ycbcr``.
RGB_FROM_YCBCR: np.ndarray = np.linalg.inv(YCBCR_FROM_RGB)

_CACHE: dict[tuple[str, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _constants(which: str, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    key = (which, dtype, device)
    hit = _CACHE.get(key)
    if hit is None:
        mat = YCBCR_FROM_RGB if which == "fwd" else RGB_FROM_YCBCR
        hit = (
            torch.as_tensor(mat.T.copy(), dtype=dtype, device=device).view(3, 3, 1, 1),
            torch.as_tensor(YCBCR_OFFSET, dtype=dtype, device=device).view(3, 1, 1),
        )
        _CACHE[key] = hit
    return hit


def _apply(mat_t: Tensor, x: Tensor) -> Tensor:
    """``out[i] = x[0] m[i, 0] + x[1] m[i, 1] + x[2] m[i, 2]`` over the channel axis -3.

    Accumulated in that order with fused multiply-add where the backend has it, as numpy's
    (BLAS) matrix product that scikit-image uses does, so that equal pixels map to equal values
    and parity with scikit-image is to the last bit on common CPUs.
    """
    acc = x[..., 0:1, :, :] * mat_t[0]
    acc = torch.addcmul(acc, x[..., 1:2, :, :], mat_t[1])
    return torch.addcmul(acc, x[..., 2:3, :, :], mat_t[2])


def _check(x: object, name: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")
    if x.ndim < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name}: expected shape (*, 3, H, W), got {tuple(x.shape)}")
    return x


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """Convert RGB images in [0, 1] to YCbCr exactly as ``skimage.color.rgb2ycbcr`` does.

    Args:
        x: RGB images, float, channel dimension third from last.

    Returns:
        YCbCr images of the same shape and dtype: Y in [16, 235], Cb and Cr in [16, 240].

    Shape:
        - Input: :math:`(*, 3, H, W)`
        - Output: :math:`(*, 3, H, W)`

    Example:
        >>> y = rgb_to_ycbcr(torch.ones(2, 3, 4, 4))
        >>> round(y[0, 0, 0, 0].item(), 3)
        235.0
    """
    _check(x, "x")
    mat_t, off = _constants("fwd", x.dtype, x.device)
    return _apply(mat_t, x) + off


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """Convert YCbCr images (scikit-image's ranges) back to RGB, as ``skimage.color.ycbcr2rgb``.

    No clipping is applied, as in scikit-image.

    Args:
        x: YCbCr images, float, channel dimension third from last, Y in [16, 235] and Cb, Cr
            in [16, 240].

    Returns:
        RGB images of the same shape and dtype, nominally in [0, 1].

    Shape:
        - Input: :math:`(*, 3, H, W)`
        - Output: :math:`(*, 3, H, W)`

    Example:
        >>> x = torch.rand(2, 3, 8, 8, dtype=torch.float64)
        >>> torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(x)), x)
        True
    """
    _check(x, "x")
    mat_t, off = _constants("inv", x.dtype, x.device)
    return _apply(mat_t, x - off)


def _bmm(mat: np.ndarray, bias: np.ndarray, x: Tensor, out: Tensor | None) -> Tensor:
    """``mat @ x + bias`` over the channel axis of (N, 3, H, W), as one ``baddbmm``."""
    n, _, h, wd = x.shape
    m = torch.as_tensor(mat, dtype=x.dtype, device=x.device)
    b = torch.as_tensor(bias, dtype=x.dtype, device=x.device)[:, None]
    args = (b.expand(n, 3, 1), m.expand(n, 3, 3), x.reshape(n, 3, h * wd))
    if out is not None:
        return torch.baddbmm(*args, out=out.view(n, 3, h * wd)).view(x.shape)
    return torch.baddbmm(*args).reshape(x.shape)


def rgb_to_ycbcr_fast(x: Tensor, out: Tensor | None = None) -> Tensor:
    """:func:`rgb_to_ycbcr` of an (N, 3, H, W) batch as one batched matrix product.

    Args:
        x: RGB images, float.
        out: optional contiguous buffer of ``x``'s shape and dtype to write into.

    Returns:
        YCbCr images (``out`` when given); last-bit rounding may differ from :func:`rgb_to_ycbcr`.
    """
    return _bmm(YCBCR_FROM_RGB, YCBCR_OFFSET, x, out)


def ycbcr_to_rgb_fast(y: Tensor, out: Tensor | None = None) -> Tensor:
    """:func:`ycbcr_to_rgb` of an (N, 3, H, W) batch as one batched matrix product.

    Args:
        y: YCbCr images, float.
        out: optional contiguous buffer of ``y``'s shape and dtype to write into.

    Returns:
        RGB images (``out`` when given); last-bit rounding may differ from :func:`ycbcr_to_rgb`.
    """
    return _bmm(RGB_FROM_YCBCR, -RGB_FROM_YCBCR @ YCBCR_OFFSET, y, out)
