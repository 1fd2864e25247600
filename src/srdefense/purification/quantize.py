"""Bit-depth reduction, median smoothing and feature squeezing (Xu, Evans, Qi, NDSS 2018).

* Bit-depth reduction to ``b`` bits is exactly ``round(x * (2**b - 1)) / (2**b - 1)`` (round half
  to even, as ``numpy.rint`` in the reference code). Its gradient is zero almost everywhere, so
  it is declared without gradient; the standard BPDA stand-in is the identity.
* Median smoothing with a ``k x k`` window matches ``scipy.ndimage.median_filter(x, size=(k, k))``
  with scipy's default ``mode="reflect"`` (symmetric padding, the edge sample repeated) and
  ``origin=0``: the window covers offsets ``-(k // 2) .. k - 1 - k // 2``, and for an even
  number of samples the *upper* median (rank ``k * k // 2``) is taken, as scipy does. It is
  computed batched with ``unfold`` and ``kthvalue``. The median selects one input sample, so it
  has a gradient almost everywhere (like max pooling): it is declared differentiable.
* Feature squeezing chains both squeezers as a purifier and detects adversarial inputs by the
  largest L1 distance between the model's softmax outputs on the input and on each squeezed
  version (:meth:`FeatureSqueezing.detection_score`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._validation import check_image_batch
from .base import Purifier
from .registry import register_defense

__all__ = [
    "BitDepthReduction",
    "FeatureSqueezing",
    "MedianSmoothing",
    "bit_depth_reduction",
    "median_filter",
]

_XU = "Xu, Evans, Qi, Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks, NDSS 2018"


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 16:
        raise ValueError(f"bits: expected an integer in [1, 16], got {bits!r}")
    return bits


def _check_kernel(kernel_size: int) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size: expected a positive integer, got {kernel_size!r}")
    return kernel_size


def bit_depth_reduction(images: Tensor, bits: int = 5) -> Tensor:
    """Quantise every value to ``2**bits`` levels: ``round(x * (2**b - 1)) / (2**b - 1)``.

    Args:
        images: float images in [0, 1].
        bits: bits per channel, in [1, 16].

    Returns:
        The quantised images (same shape, dtype and device). The gradient is zero almost
        everywhere; use :class:`BitDepthReduction`, which declares that it has none.

    Shape:
        - images: (N, C, H, W)
        - output: (N, C, H, W)

    Example:
        >>> bit_depth_reduction(torch.tensor([[[[0.2, 0.7]]]]), bits=1)
        tensor([[[[0., 1.]]]])
    """
    check_image_batch(images, "images", channels=None)
    levels = 2 ** _check_bits(bits) - 1
    return torch.round(images.clamp(0, 1) * levels) / levels


def _symmetric_index(n: int, before: int, after: int, device: torch.device) -> Tensor:
    """Indices of scipy's ``reflect`` (numpy ``symmetric``) padding: ``d c b a | a b c d | d c``."""
    i = torch.arange(-before, n + after, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def median_filter(images: Tensor, kernel_size: int = 3) -> Tensor:
    """Per-channel ``k x k`` median filter, equal to ``scipy.ndimage.median_filter``.

    Boundary handling is scipy's default ``mode="reflect"`` (the edge sample is repeated); for
    an even ``kernel_size`` the window is ``-(k // 2) .. k - 1 - k // 2`` around each pixel and
    the upper of the two middle values is returned, exactly as scipy does.

    Args:
        images: float images.
        kernel_size: side of the square window (1 returns a copy).

    Returns:
        The filtered images (same shape, dtype and device). The gradient flows to the selected
        sample of each window.

    Shape:
        - images: (N, C, H, W)
        - output: (N, C, H, W)

    Example:
        >>> median_filter(torch.rand(2, 3, 8, 8), kernel_size=3).shape
        torch.Size([2, 3, 8, 8])
    """
    check_image_batch(images, "images", channels=None)
    k = _check_kernel(kernel_size)
    if k == 1 or images.numel() == 0:
        return images.clone()
    n, c, h, w = images.shape
    before, after = k // 2, k - 1 - k // 2
    rows = _symmetric_index(h, before, after, images.device)
    cols = _symmetric_index(w, before, after, images.device)
    padded = images[:, :, rows][:, :, :, cols]
    windows = nn.functional.unfold(padded.reshape(n * c, 1, *padded.shape[-2:]), k)
    med = windows.kthvalue(k * k // 2 + 1, dim=1).values
    return med.reshape(n, c, h, w)


class BitDepthReduction(Purifier):
    """Bit-depth reduction (Xu et al., NDSS 2018; evaluated by Guo et al., ICLR 2018).

    No true gradient (zero almost everywhere): backward raises ``NoGradientError``; the BPDA
    stand-in is the identity.

    Args:
        bits: bits per channel; default 5, Xu et al.'s best ImageNet setting.
    """

    differentiable = False
    randomized = False
    reference = _XU

    def __init__(self, bits: int = 5) -> None:
        super().__init__()
        self.bits = _check_bits(bits)

    def purify(self, x: Tensor) -> Tensor:
        """Quantise to ``2**bits`` levels."""
        return bit_depth_reduction(x, self.bits)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"bits={self.bits}"


class MedianSmoothing(Purifier):
    """Median smoothing with a ``k x k`` window (Xu et al., NDSS 2018), equal to scipy's.

    Differentiable almost everywhere (the gradient reaches the selected median sample), so it
    is attacked through its true gradient; :meth:`bpda_surrogate` is the stage itself.

    Args:
        kernel_size: side of the window; default 3 (Xu et al. used 2 on ImageNet and CIFAR-10).
    """

    differentiable = True
    randomized = False
    reference = _XU

    def __init__(self, kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = _check_kernel(kernel_size)

    def purify(self, x: Tensor) -> Tensor:
        """Median-filter each channel."""
        return median_filter(x, self.kernel_size)

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Differentiable already: the stage itself."""
        return self.purify(x)

    @property
    def bpda_name(self) -> str:
        """Name of the BPDA stand-in."""
        return "itself (median, gradient a.e.)"

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"kernel_size={self.kernel_size}"


class FeatureSqueezing(Purifier):
    """Feature squeezing (Xu, Evans, Qi, NDSS 2018): bit depth and median smoothing.

    As a purifier the squeezers are applied in sequence (bit depth, then median). As a detector,
    :meth:`detection_score` is the joint score of the paper: the largest L1 distance between
    the softmax of the model on the input and on each squeezed input (in [0, 2]); Xu et al.
    flag an input when it exceeds a threshold chosen for 5% false positives on clean data.
    The bit-depth stage has no gradient, so backward raises ``NoGradientError``; the BPDA
    stand-in is the median filter alone (the bit-depth stage replaced by the identity).

    Args:
        bits: bits of the bit-depth squeezer, or ``None`` to skip it; default 5 (ImageNet).
        median_size: window of the median squeezer, or ``None`` to skip it; default 2 (ImageNet).
    """

    randomized = False
    reference = _XU

    def __init__(self, bits: int | None = 5, median_size: int | None = 2) -> None:
        super().__init__()
        if bits is None and median_size is None:
            raise ValueError("feature squeezing needs at least one squeezer (bits or median_size)")
        self.bits = None if bits is None else _check_bits(bits)
        self.median_size = None if median_size is None else _check_kernel(median_size)
        self.differentiable = self.bits is None  # no true gradient through the bit-depth squeezer

    def squeezers(self) -> list[tuple[str, Purifier]]:
        """The individual squeezers, as ``(name, purifier)`` pairs."""
        out: list[tuple[str, Purifier]] = []
        if self.bits is not None:
            out.append((f"bit-depth-{self.bits}", BitDepthReduction(self.bits)))
        if self.median_size is not None:
            out.append((f"median-{self.median_size}x{self.median_size}", MedianSmoothing(self.median_size)))
        return out

    def purify(self, x: Tensor) -> Tensor:
        """Bit-depth reduction then median smoothing."""
        if self.bits is not None:
            x = bit_depth_reduction(x, self.bits)
        if self.median_size is not None:
            x = median_filter(x, self.median_size)
        return x

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Median filter (the differentiable squeezer); bit depth replaced by the identity."""
        return x if self.median_size is None else median_filter(x, self.median_size)

    @property
    def bpda_name(self) -> str:
        """Name of the BPDA stand-in."""
        return "identity" if self.median_size is None else "median (bit depth -> identity)"

    @torch.no_grad()
    def detection_score(self, model: nn.Module, x: Tensor) -> Tensor:
        """Joint detection score: ``max_i || softmax(model(x)) - softmax(model(squeeze_i(x))) ||_1``.

        Args:
            model: classifier mapping [0, 1] images to logits.
            x: the images to score.

        Returns:
            Scores in [0, 2], larger for inputs whose prediction a squeezer changes.

        Shape:
            - x: (N, 3, H, W)
            - output: (N,)
        """
        check_image_batch(x, "images")
        p0 = torch.softmax(model(x), dim=-1)
        scores = [
            (p0 - torch.softmax(model(squeezer.purify(x)), dim=-1)).abs().sum(dim=-1)
            for _, squeezer in self.squeezers()
        ]
        return torch.stack(scores).amax(dim=0)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"bits={self.bits}, median_size={self.median_size}"


@register_defense(
    "bit-depth",
    reference=_XU,
    description="bit-depth reduction to 5 bits per channel; no gradient, BPDA identity",
    fast=True,
)
def _bit_depth(bits: int = 5) -> BitDepthReduction:
    return BitDepthReduction(bits=bits)


@register_defense(
    "median",
    reference=_XU,
    description="3x3 median smoothing (scipy.ndimage.median_filter, reflect); gradient a.e.",
    fast=True,
)
def _median(kernel_size: int = 3) -> MedianSmoothing:
    return MedianSmoothing(kernel_size=kernel_size)


@register_defense(
    "feature-squeezing",
    reference=_XU,
    description="5-bit depth then 2x2 median (Xu et al. ImageNet); detection_score(model, x)",
    fast=True,
)
def _feature_squeezing(bits: int | None = 5, median_size: int | None = 2) -> FeatureSqueezing:
    return FeatureSqueezing(bits=bits, median_size=median_size)
