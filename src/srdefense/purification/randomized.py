"""Randomised input transformations: random resizing + padding, and pixel deflection.

Both take ``generator`` (a ``torch.Generator``) or ``seed``; with the same seed (or a generator
in the same state) a draw is replayed exactly. Random numbers are drawn on the generator's
device (the CPU when none is given) and moved to the images' device, so a seed gives the same
draw on every device.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .._random import GeneratorBank, RandomSource, make_generator, randint
from .._validation import check_image_batch
from ..data.transforms import resize_to
from .base import Purifier
from .registry import register_defense
from .wavelet import denoise_wavelet  # the batched, scikit-image-compatible denoiser

__all__ = ["GeneratorBank", "PixelDeflection", "RandomResizePad", "pixel_deflection", "random_resize_pad"]

_XIE = "Xie, Wang, Zhang, Ren, Yuille, Mitigating Adversarial Effects Through Randomization, ICLR 2018"
_PRAKASH = (
    "Prakash, Moran, Garber, DiLillo, Storer, Deflecting Adversarial Attacks with Pixel Deflection, CVPR 2018"
)


# ----------------------------------------------------------------------------------------------
# random resizing + padding (Xie et al. 2018)
# ----------------------------------------------------------------------------------------------

Interpolation = Literal["nearest", "bilinear"]


def _resize_pad_sizes(h: int, w: int, min_ratio: float, max_ratio: float) -> tuple[int, int, int, int]:
    """(lowest resized height, output height, lowest resized width, output width)."""
    out_h, out_w = round(h * max_ratio), round(w * max_ratio)
    low_h, low_w = round(h * min_ratio), round(w * min_ratio)
    return min(low_h, out_h - 1), out_h, min(low_w, out_w - 1), out_w


def _resize_and_place(
    x: Tensor,
    size: tuple[int, int],
    top: int,
    left: int,
    out: tuple[int, int],
    pad_value: float,
    mode: Interpolation,
) -> Tensor:
    if mode == "nearest":
        r = nn.functional.interpolate(x, size=size, mode="nearest")
    else:
        r = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False)
    pads = (left, out[1] - size[1] - left, top, out[0] - size[0] - top)
    return nn.functional.pad(r, pads, mode="constant", value=pad_value)


def random_resize_pad(
    images: Tensor,
    *,
    min_ratio: float = 310 / 299,
    max_ratio: float = 331 / 299,
    pad_value: float = 0.5,
    mode: Interpolation = "nearest",
    generator: RandomSource | None = None,
) -> Tensor:
    """Resize each image to a random size, then pad it at a random position (Xie et al. 2018).

    For an input side ``s`` the output side is ``round(s * max_ratio)`` and the resized side is
    drawn uniformly from ``[round(s * min_ratio), round(s * max_ratio))``; with the defaults a
    299 x 299 image is resized to ``rnd x rnd``, ``rnd`` in [310, 331) (the official
    repository's range), and padded to 331 x 331 with ``a`` columns on the left and ``b`` rows
    on top, ``a, b`` uniform in ``[0, 331 - rnd]``. A 224 x 224 image gives a 248 x 248 output,
    ``rnd`` in [232, 248). Non-square images keep their aspect ratio (width
    ``round(rnd_h * W / H)``). Each image gets its own draw.

    Args:
        images: float RGB images in [0, 1].
        min_ratio: smallest resized side over the input side.
        max_ratio: output side over the input side (the resized side stays below it).
        pad_value: fill of the padding; 0.5 is the zero of the [-1, 1] inputs of the reference
            Inception code (Athalye et al. assumed the same).
        mode: ``"nearest"`` (the official TensorFlow code) or ``"bilinear"``.
        generator: random generator (``None``: torch's global one).

    Returns:
        The padded images, larger than the input: (N, 3, round(H * max_ratio),
        round(W * max_ratio)). Differentiable with respect to ``images`` for the drawn sizes.
    """
    check_image_batch(images, "images")
    if not 0 < min_ratio < max_ratio:
        raise ValueError(f"expected 0 < min_ratio < max_ratio, got {min_ratio} and {max_ratio}")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"mode: expected 'nearest' or 'bilinear', got {mode!r}")
    n, _, h, w = images.shape
    low_h, out_h, _, out_w = _resize_pad_sizes(h, w, min_ratio, max_ratio)
    cpu = torch.device("cpu")
    rh = randint(low_h, out_h, (n,), generator, cpu)
    rw = torch.clamp(torch.round(rh.double() * w / h).long(), 1, out_w)
    tops = randint(0, out_h - rh + 1, (n,), generator, cpu)
    lefts = randint(0, out_w - rw + 1, (n,), generator, cpu)
    if n == 0:
        return images.new_zeros((0, images.shape[1], out_h, out_w))
    outs = [
        _resize_and_place(
            images[i : i + 1],
            (int(rh[i]), int(rw[i])),
            int(tops[i]),
            int(lefts[i]),
            (out_h, out_w),
            pad_value,
            mode,
        )
        for i in range(n)
    ]
    return torch.cat(outs)


class RandomResizePad(Purifier):
    """Random resizing + random padding (Xie, Wang, Zhang, Ren, Yuille, ICLR 2018).

    See :func:`random_resize_pad`. The output is *larger* than the input (331 x 331 for 299 x
    299, 248 x 248 for 224 x 224), as in the paper, whose classifier relies on global pooling;
    ``scale`` is 1 because the growth factor is not an integer. With ``resize_back=True`` the
    padded image is resized back to the input size (antialiased bilinear), which keeps the
    same-size contract. The stage is differentiable for a given draw (resize + pad); attack it
    with EOT over the draws. Its BPDA stand-in is the deterministic middle draw: resize to the
    middle size and centre the image.

    Args:
        min_ratio: smallest resized side over the input side (default 310 / 299).
        max_ratio: output side over the input side (default 331 / 299).
        pad_value: fill of the padding (default 0.5, mid gray).
        mode: ``"nearest"`` (official code) or ``"bilinear"``.
        resize_back: resize the output back to the input size.
        generator: random generator; mutually exclusive with ``seed``.
        seed: seed of a new CPU generator, so that draws can be replayed.
    """

    differentiable = True
    randomized = True
    per_sample_draws = True
    reference = _XIE

    def __init__(
        self,
        min_ratio: float = 310 / 299,
        max_ratio: float = 331 / 299,
        pad_value: float = 0.5,
        mode: Interpolation = "nearest",
        resize_back: bool = False,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not 0 < min_ratio < max_ratio:
            raise ValueError(f"expected 0 < min_ratio < max_ratio, got {min_ratio} and {max_ratio}")
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"mode: expected 'nearest' or 'bilinear', got {mode!r}")
        self.min_ratio = float(min_ratio)
        self.max_ratio = float(max_ratio)
        self.pad_value = float(pad_value)
        self.mode: Interpolation = mode
        self.resize_back = bool(resize_back)
        self.generator = make_generator(generator, seed)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height x width``."""
        if self.resize_back:
            return height, width
        _, out_h, _, out_w = _resize_pad_sizes(height, width, self.min_ratio, self.max_ratio)
        return out_h, out_w

    def _back(self, y: Tensor, size: tuple[int, int]) -> Tensor:
        if not self.resize_back:
            return y
        return resize_to(y, size)

    def purify(self, x: Tensor) -> Tensor:
        """Resize to a random size and pad at a random position (one draw per image)."""
        y = random_resize_pad(
            x,
            min_ratio=self.min_ratio,
            max_ratio=self.max_ratio,
            pad_value=self.pad_value,
            mode=self.mode,
            generator=self.generator,
        )
        return self._back(y, (x.shape[-2], x.shape[-1]))

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Deterministic middle draw: middle size, centred."""
        h, w = x.shape[-2:]
        low_h, out_h, _, out_w = _resize_pad_sizes(h, w, self.min_ratio, self.max_ratio)
        rh = (low_h + out_h - 1) // 2
        rw = max(1, min(out_w, round(rh * w / h)))
        if x.shape[0] == 0:
            y = x.new_zeros((0, x.shape[1], out_h, out_w))
        else:
            y = _resize_and_place(
                x, (rh, rw), (out_h - rh) // 2, (out_w - rw) // 2, (out_h, out_w), self.pad_value, self.mode
            )
        return self._back(y, (h, w))

    @property
    def bpda_name(self) -> str:
        """Name of the BPDA stand-in."""
        return "middle size, centred"

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"min_ratio={self.min_ratio:.4f}, max_ratio={self.max_ratio:.4f}, pad_value={self.pad_value}, "
            f"mode={self.mode!r}, resize_back={self.resize_back}"
        )


@register_defense(
    "random-resize-pad",
    reference=_XIE,
    description="random resize to [310, 331)/299 of the side, random pad to 331/299 (output larger)",
    fast=True,
)
def _random_resize_pad(
    min_ratio: float = 310 / 299,
    max_ratio: float = 331 / 299,
    pad_value: float = 0.5,
    mode: str = "nearest",
    resize_back: bool = False,
    seed: int | None = None,
) -> RandomResizePad:
    return RandomResizePad(
        min_ratio=min_ratio,
        max_ratio=max_ratio,
        pad_value=pad_value,
        mode=mode,  # type: ignore[arg-type]
        resize_back=resize_back,
        seed=seed,
    )


# ----------------------------------------------------------------------------------------------
# pixel deflection (Prakash et al. 2018)
# ----------------------------------------------------------------------------------------------


def _check_deflection_args(deflections: int, window: int) -> None:
    if isinstance(deflections, bool) or not isinstance(deflections, int) or deflections < 0:
        raise ValueError(f"deflections: expected a non-negative integer, got {deflections!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window: expected a non-negative integer, got {window!r}")


def pixel_deflection(
    images: Tensor, deflections: int = 200, window: int = 10, *, generator: RandomSource | None = None
) -> Tensor:
    """Replace random pixels by a random neighbour (the deflection step of Prakash et al.).

    As in the reference code (``methods.pixel_deflection`` of iamaaditya/pixel-deflection, used
    without a robust activation map), a deflection copies *one channel* value: deflection ``j``
    works on channel ``j mod C`` at a uniformly drawn position ``(r, c)`` and copies the value at
    ``(r + a, c + b)``, with the offsets uniform over the part of the ``[-window, window]^2``
    square that lies inside the image (what the reference's rejection loop samples, except that
    it also excludes row and column 0 as sources). All deflections of an image read the input
    image (the reference applies them one after the other, so a source may already have been
    deflected; with 200 deflections among ~150k values the difference is negligible). If two
    deflections hit the same value, the last one wins.

    Args:
        images: float images in [0, 1].
        deflections: number of single-channel replacements per image (reference default 200).
        window: half-size of the neighbourhood (reference default 10).
        generator: random generator (``None``: torch's global one).

    Returns:
        The deflected images (same shape); the input is not modified.

    Shape:
        - images: (N, C, H, W)
        - output: (N, C, H, W)
    """
    check_image_batch(images, "images", channels=None)
    _check_deflection_args(deflections, window)
    n, c, h, w = images.shape
    d = deflections
    cpu = torch.device("cpu")
    rows = randint(0, h, (n, d), generator, cpu)
    cols = randint(0, w, (n, d), generator, cpu)
    lo_r, hi_r = torch.clamp(rows - window, min=0), torch.clamp(rows + window, max=h - 1)
    lo_c, hi_c = torch.clamp(cols - window, min=0), torch.clamp(cols + window, max=w - 1)
    src_r = randint(lo_r, hi_r + 1, (n, d), generator, cpu)
    src_c = randint(lo_c, hi_c + 1, (n, d), generator, cpu)
    out = images.clone()
    if n == 0 or d == 0:
        return out
    ch = torch.arange(d) % c
    target = (ch * h * w + rows * w + cols).to(images.device)
    source = (ch * h * w + src_r * w + src_c).to(images.device)
    flat = out.reshape(n, -1)
    flat.scatter_(1, target, images.reshape(n, -1).gather(1, source))
    return flat.reshape(n, c, h, w)


class PixelDeflection(Purifier):
    """Pixel deflection then wavelet denoising (Prakash et al., CVPR 2018).

    Deflection as in :func:`pixel_deflection` (no robust activation map, the setting of the
    reference code's ``-disable_map``), then the reference's denoiser: scikit-image-style
    ``denoise_wavelet(sigma=0.04, mode="soft", convert2ycbcr=True, method="BayesShrink")`` with
    the default Haar wavelet and levels, computed batched by
    :func:`srdefense.purification.wavelet.denoise_wavelet`. The reference code predates
    scikit-image 0.16: sigma was applied unchanged to each YCbCr channel after rescaling the
    channel to [0, 1], and the output was clipped; ``legacy_sigma=True`` (the default here)
    reproduces that (``legacy_sigma=False``: the scikit-image >= 0.16 meaning).
    Randomised and without a gradient (the deflection is a random copy, the denoiser is
    treated as a black box as in Athalye et al.): backward raises ``NoGradientError``; the BPDA
    stand-in is the identity.

    Args:
        deflections: single-channel replacements per image (default 200, reference code).
        window: half-size of the deflection neighbourhood (default 10, reference code).
        sigma: noise level of the wavelet denoiser (default 0.04, reference code); ``None``
            estimates it.
        denoise: apply the wavelet denoiser after deflection (the paper always does).
        legacy_sigma: scikit-image <= 0.15 meaning of sigma (the reference's); see above.
        generator: random generator; mutually exclusive with ``seed``.
        seed: seed of a new CPU generator, so that draws can be replayed.
    """

    differentiable = False
    randomized = True
    per_sample_draws = True
    reference = _PRAKASH

    def __init__(
        self,
        deflections: int = 200,
        window: int = 10,
        sigma: float | None = 0.04,
        denoise: bool = True,
        legacy_sigma: bool = True,
        *,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        _check_deflection_args(deflections, window)
        if sigma is not None and sigma < 0:
            raise ValueError(f"sigma: expected >= 0 or None, got {sigma}")
        self.deflections = deflections
        self.window = window
        self.sigma = sigma
        self.denoise = bool(denoise)
        self.legacy_sigma = bool(legacy_sigma)
        self.generator = make_generator(generator, seed)

    def purify(self, x: Tensor) -> Tensor:
        """Deflect then denoise."""
        y = pixel_deflection(x, self.deflections, self.window, generator=self.generator)
        if not self.denoise or y.shape[0] == 0:
            return y
        y = denoise_wavelet(
            y,
            sigma=self.sigma,
            wavelet="db1",
            mode="soft",
            convert2ycbcr=True,
            method="BayesShrink",
            legacy_sigma=self.legacy_sigma,
        )
        return y.clamp(0, 1)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return (
            f"deflections={self.deflections}, window={self.window}, sigma={self.sigma}, "
            f"denoise={self.denoise}, legacy_sigma={self.legacy_sigma}"
        )


@register_defense(
    "pixel-deflection",
    reference=_PRAKASH,
    description="200 random pixel deflections (window 10), then BayesShrink wavelet denoising",
    fast=True,
)
def _pixel_deflection(
    deflections: int = 200,
    window: int = 10,
    sigma: float | None = 0.04,
    denoise: bool = True,
    legacy_sigma: bool = True,
    seed: int | None = None,
) -> PixelDeflection:
    return PixelDeflection(
        deflections=deflections,
        window=window,
        sigma=sigma,
        denoise=denoise,
        legacy_sigma=legacy_sigma,
        seed=seed,
    )
