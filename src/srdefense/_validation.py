"""Input checks shared by every public entry point (validated once, at the boundary)."""

from __future__ import annotations

import torch
from torch import Tensor


def check_image_batch(x: object, name: str = "images", channels: int | None = 3) -> Tensor:
    """Check that ``x`` is a float image batch of shape (N, C, H, W).

    Args:
        x: the object to check.
        name: the argument name used in error messages.
        channels: required number of channels, or ``None`` for any.

    Returns:
        ``x`` itself, typed as a tensor.

    Raises:
        TypeError: if ``x`` is not a floating-point tensor.
        ValueError: if its shape is not (N, C, H, W) with the required channels.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name}: expected a floating-point tensor (values in [0, 1]), got {x.dtype}")
    if x.ndim != 4:
        raise ValueError(f"{name}: expected shape (N, C, H, W), got {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(
            f"{name}: expected {channels} channels in shape (N, {channels}, H, W), got {tuple(x.shape)}"
        )
    return x


def check_labels(labels: object, n: int, name: str = "labels") -> Tensor:
    """Check that ``labels`` is an integer tensor of shape (n,)."""
    if not isinstance(labels, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(labels).__name__}")
    if labels.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"{name}: expected an integer tensor, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {tuple(labels.shape)}")
    return labels
