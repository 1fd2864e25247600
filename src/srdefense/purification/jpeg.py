"""JPEG compression as an input transformation (a real codec, through Pillow).

The defense goes back to Dziugaite, Ghahramani, Roy (2016) and Das et al. (2017); Guo, Rana,
Cisse, van der Maaten (ICLR 2018) evaluated it at quality 75, the setting used here by default.
Each image is quantised to 8 bits (``round(255 * x)``), encoded by libjpeg at ``quality`` with
Pillow's default chroma subsampling (4:2:0), decoded and divided by 255. The codec has no
gradient: backward raises :class:`~srdefense.purification.base.NoGradientError`; the standard
BPDA stand-in (Athalye et al., ICML 2018) is the identity.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .._validation import check_image_batch
from .base import Purifier
from .registry import register_defense

__all__ = ["JPEG", "jpeg_compress"]

_GUO = (
    "Guo, Rana, Cisse, van der Maaten, Countering Adversarial Images using Input Transformations, "
    "ICLR 2018 (JPEG from Dziugaite et al. 2016, Das et al. 2017)"
)


def _check_quality(quality: int) -> int:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality: expected an integer in [1, 100], got {quality!r}")
    return quality


def _to_uint8(x: Tensor) -> np.ndarray:
    """(N, C, H, W) float in [0, 1] -> (N, H, W, C) uint8, rounding to nearest."""
    a = (x.detach().to(torch.float32).clamp(0, 1) * 255).round().to(torch.uint8)
    return a.permute(0, 2, 3, 1).cpu().numpy()


def jpeg_compress(images: Tensor, quality: int = 75) -> Tensor:
    """Encode and decode each image with libjpeg (Pillow) at ``quality``.

    Args:
        images: float RGB images in [0, 1].
        quality: JPEG quality factor in [1, 100] (Pillow's scale; 75 is its default and Guo et
            al.'s setting).

    Returns:
        The decoded images, float in [0, 1] (multiples of 1/255), same dtype and device.

    Shape:
        - images: (N, 3, H, W)
        - output: (N, 3, H, W)

    Example:
        >>> x = torch.rand(2, 3, 32, 32)
        >>> jpeg_compress(x, quality=50).shape
        torch.Size([2, 3, 32, 32])
    """
    check_image_batch(images, "images")
    _check_quality(quality)
    arrays = _to_uint8(images)
    out = np.empty_like(arrays)
    for i, a in enumerate(arrays):
        buf = io.BytesIO()
        Image.fromarray(a, mode="RGB").save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    y = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=images.device, dtype=images.dtype)
    return (y / 255).contiguous()


class JPEG(Purifier):
    """JPEG compression at a fixed quality (Guo et al., ICLR 2018).

    Args:
        quality: JPEG quality factor in [1, 100]; default 75 as in Guo et al.

    Shape:
        - input: (N, 3, H, W), float in [0, 1]
        - output: (N, 3, H, W)

    Example:
        >>> JPEG(quality=75)(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 3, 16, 16])
    """

    differentiable = False
    randomized = False
    reference = _GUO

    def __init__(self, quality: int = 75) -> None:
        super().__init__()
        self.quality = _check_quality(quality)

    def purify(self, x: Tensor) -> Tensor:
        """Encode and decode every image (no gradient)."""
        return jpeg_compress(x, self.quality)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"quality={self.quality}"


@register_defense(
    "jpeg",
    reference=_GUO,
    description="JPEG re-encoding through Pillow/libjpeg (quality 75); no gradient, BPDA identity",
    fast=True,
)
def _jpeg(quality: int = 75) -> JPEG:
    return JPEG(quality=quality)
