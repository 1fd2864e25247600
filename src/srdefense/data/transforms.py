"""Standard ImageNet evaluation preprocessing, in torch: resize the shorter side, centre crop.

``preprocess(x, size=224, crop_pct=0.875)`` resizes the shorter side to ``int(size / crop_pct)``
(256 for 224) with antialiased bicubic interpolation, then crops the central ``size x size``
square: the timm/torchvision evaluation transform, on float [0, 1] tensors, single images
(3, H, W) or batches (N, 3, H, W).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

_MODES = ("bicubic", "bilinear", "nearest", "area")


def _as_batch(x: Tensor, name: str) -> tuple[Tensor, bool]:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor (values in [0, 1]), got {x.dtype}")
    if x.ndim == 3:
        return x.unsqueeze(0), True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"{name}: expected shape (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")


def resize_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize images to ``size`` with antialiased bilinear interpolation, clipped to [0, 1].

    The one way the package resizes a purified image back to a given size (a 2x image to the
    native size, a padded image to its input size, a photo to a thumbnail); differentiable.

    Args:
        x: images (N, C, H, W) in [0, 1].
        size: ``(height, width)`` of the output.

    Returns:
        The resized images, (N, C, height, width), in [0, 1].
    """
    size = (int(size[0]), int(size[1]))
    if x.shape[0] == 0:
        return x.new_zeros((0, x.shape[1], *size))
    return F.interpolate(x, size=size, mode="bilinear", antialias=True).clamp(0, 1)


def resize_shorter(x: Tensor, size: int, *, interpolation: str = "bicubic", antialias: bool = True) -> Tensor:
    """Resize so that the shorter side is ``size``, keeping the aspect ratio.

    The longer side becomes ``int(size * long / short)`` (torchvision's rule). Bicubic output
    is clamped to [0, 1].

    Args:
        x: images (C, H, W) or (N, C, H, W), float.
        size: the new length of the shorter side.
        interpolation: "bicubic", "bilinear", "nearest" or "area".
        antialias: low-pass filter when downscaling (bicubic/bilinear only), as Pillow does.

    Returns:
        The resized images, same number of dimensions as ``x``.
    """
    if interpolation not in _MODES:
        raise ValueError(f"interpolation: expected one of {', '.join(_MODES)}, got {interpolation!r}")
    if int(size) < 1:
        raise ValueError(f"size: expected a positive integer, got {size}")
    xb, single = _as_batch(x, "images")
    h, w = xb.shape[-2:]
    if h <= w:
        new_h, new_w = int(size), int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), int(size)
    if (new_h, new_w) == (h, w):
        out = xb
    else:
        kwargs: dict = {}
        if interpolation in ("bicubic", "bilinear"):
            kwargs = {"align_corners": False, "antialias": antialias}
        out = F.interpolate(xb, size=(new_h, new_w), mode=interpolation, **kwargs)
        if interpolation == "bicubic":
            out = out.clamp(0.0, 1.0)
    return out[0] if single else out


def center_crop(x: Tensor, size: int) -> Tensor:
    """Crop the central ``size x size`` square (offsets rounded as torchvision does).

    Args:
        x: images (C, H, W) or (N, C, H, W) with H, W >= ``size``.
        size: side of the crop.

    Returns:
        The cropped images (a view of ``x``).
    """
    xb, single = _as_batch(x, "images")
    h, w = xb.shape[-2:]
    if h < size or w < size:
        raise ValueError(f"images: cannot crop {size}x{size} from {h}x{w}")
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    out = xb[..., top : top + size, left : left + size]
    return out[0] if single else out


def preprocess(
    x: Tensor, size: int = 224, crop_pct: float = 0.875, *, interpolation: str = "bicubic"
) -> Tensor:
    """Standard evaluation preprocessing: resize the shorter side to ``int(size / crop_pct)``, crop ``size``.

    Args:
        x: images (3, H, W) or (N, 3, H, W), float in [0, 1].
        size: output side.
        crop_pct: fraction of the resized shorter side kept by the crop (0 < crop_pct <= 1).
        interpolation: resize interpolation.

    Returns:
        Images (3, size, size) or (N, 3, size, size) in [0, 1].

    Example:
        >>> import torch
        >>> preprocess(torch.rand(3, 300, 400)).shape
        torch.Size([3, 224, 224])
    """
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct: expected a value in (0, 1], got {crop_pct}")
    scale = int(size / crop_pct)
    return center_crop(resize_shorter(x, scale, interpolation=interpolation), size)


class Preprocess(nn.Module):
    """Module form of :func:`preprocess`.

    Args:
        size: output side.
        crop_pct: crop fraction.
        interpolation: resize interpolation.

    Shape:
        - Input: (3, H, W) or (N, 3, H, W)
        - Output: (3, size, size) or (N, 3, size, size)
    """

    def __init__(self, size: int = 224, crop_pct: float = 0.875, *, interpolation: str = "bicubic") -> None:
        super().__init__()
        self.size = int(size)
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation

    def forward(self, x: Tensor) -> Tensor:
        """Preprocess ``x``."""
        return preprocess(x, self.size, self.crop_pct, interpolation=self.interpolation)

    def extra_repr(self) -> str:
        """Show the parameters in the module's repr."""
        return f"size={self.size}, crop_pct={self.crop_pct}, interpolation={self.interpolation!r}"


def resize_center_crop(
    x: Tensor, size: int = 224, crop_pct: float = 0.875, *, interpolation: str = "bicubic"
) -> Tensor:
    """Alias of :func:`preprocess` (resize the shorter side to ``int(size / crop_pct)``, crop ``size``)."""
    return preprocess(x, size, crop_pct, interpolation=interpolation)
