"""Batched, differentiable wavelet denoising in torch, numerically equal to scikit-image's.

This is stage 1 of the Mustafa et al. (IEEE TIP 2020) defense: ``denoise_wavelet`` with
``convert2ycbcr=True, method='BayesShrink', mode='soft', sigma=0.01`` and the Haar wavelet.

Every step is batched over images and channels (no Python loop over the batch; the only loop
is over decomposition levels) and has a true gradient, including through the data-dependent
BayesShrink thresholds, the noise estimate (a median) and the per-channel YCbCr rescaling.

The package, bottom up:

* :mod:`.options`: argument checks and types (a leaf);
* :mod:`.transform`: the 2-D DWT in torch, equal to PyWavelets' (boundary ``'symmetric'``),
  and :mod:`.haar`, its 2-tap level as a 4x4 matrix on 2x2 blocks (an implementation detail:
  the fast path for Haar, tested equal to the generic one);
* :mod:`.shrink`: the shrinkage rules (noise estimate, BayesShrink, VisuShrink, soft/hard);
* :mod:`.channels`: the one mapping from image channels (RGB or rescaled YCbCr) to planes and
  their sigma; the colour conversion is :mod:`srdefense.purification.color`'s;
* :mod:`.engine`: the one pipeline (decompose, shrink, reconstruct) for every wavelet;
* here: the public function, with its CPU cache blocking, and the ``nn.Module``.

Differences from scikit-image, all documented at :func:`denoise_wavelet`:

* a channel whose finest diagonal detail band is all zeros gets an estimated sigma of 0
  (scikit-image takes the median of an empty array and returns NaN);
* ``legacy_sigma=True`` reproduces scikit-image <= 0.15 (see :func:`denoise_wavelet`);
* ``clip`` lets the caller clip the output to the input range; :class:`WaveletDenoise` clips
  to [0, 1] by default so that it obeys the purifier contract.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from ..._validation import check_image_batch
from ..base import Purifier
from .channels import _sigma_tensor
from .engine import _denoise_batch, _denoise_planes, _denoise_planes_two_tap, denoise_planes
from .options import SigmaLike, WaveletLike, _check_options, _check_sigma, _resolve_wavelet
from .shrink import _threshold, estimate_sigma_dwt
from .transform import _taps, dwt2, idwt2, wavedec2, waverec2
from .workspace import Buffers, Workspace, _ws_empty  # noqa: F401 (Workspace: re-exported)

__all__ = [
    "WaveletDenoise",
    "denoise_wavelet",
    "dwt2",
    "estimate_sigma_dwt",
    "idwt2",
    "wavedec2",
    "waverec2",
]

# the engine's internals, importable from here as before the split (tests drive them directly)
_INTERNALS = (_denoise_planes, _denoise_planes_two_tap, _resolve_wavelet, _taps, _threshold, denoise_planes)

#: CPU cache-blocking size (elements per block of images) used by :func:`denoise_wavelet`:
#: two 224 x 224 RGB images. Measured with interleaved repeats (64 photos, 2 threads) on a
#: 2-core AMD EPYC Zen 4: blocks of 2 images ran ~5x faster than scikit-image, blocks of 1 or
#: >= 3 images 2-3.6x. On a 2-core Zen 3 the order was the other way round: 2 images 3.8-4.5x,
#: 8 images 6.1-6.3x (``benchmarks/bench_wavelet.py``). Hence :data:`_CPU_BLOCK_FACTORS`.
_CPU_CHUNK_ELEMENTS = 3 << 17

#: Candidate blocks, as multiples of :data:`_CPU_CHUNK_ELEMENTS`. The first large enough call
#: for a given image shape, dtype and thread count times two blocks of each candidate (the
#: second one, warm) while denoising its own first images, and keeps the fastest per image for
#: the rest of the process. No work is repeated, and the result does not depend on the choice
#: (each image is denoised on its own; tested).
_CPU_BLOCK_FACTORS = (1, 4)

_BLOCK_CHOICE: dict[tuple[object, ...], int] = {}


def denoise_wavelet(
    image: Tensor,
    sigma: SigmaLike = None,
    wavelet: WaveletLike = "db1",
    mode: str = "soft",
    wavelet_levels: int | None = None,
    convert2ycbcr: bool = False,
    method: str = "BayesShrink",
    rescale_sigma: bool = True,
    legacy_sigma: bool = False,
    *,
    clip: bool | None = None,
) -> Tensor:
    """Wavelet denoising of an image batch, as ``skimage.restoration.denoise_wavelet``.

    Equal (to float rounding) to ``skimage.restoration.denoise_wavelet(img, ...,
    channel_axis=-1)`` applied to each image of the batch: every channel (RGB, or YCbCr with
    ``convert2ycbcr``) is decomposed with ``wavelet_levels`` levels of the 2-D DWT
    (PyWavelets' 'symmetric' boundary), each detail sub-band is thresholded, the approximation
    band is kept, and the inverse transform is cropped back to the input size.

    * ``method='BayesShrink'`` (Chang, Yu, Vetterli 2000): per sub-band threshold
      ``sigma**2 / sqrt(max(mean(d**2) - sigma**2, eps))`` with ``eps`` the dtype's machine
      epsilon.
    * ``method='VisuShrink'`` (Donoho & Johnstone 1994): one threshold
      ``sigma * sqrt(2 log(H W))`` for every sub-band.
    * ``sigma=None``: estimated per channel as ``median(|d|) / 0.6745`` over the non-zero
      coefficients of the finest diagonal sub-band (numpy median convention).
    * ``convert2ycbcr=True``: RGB -> YCbCr (scikit-image's ranges), each YCbCr channel of each
      image rescaled to [0, 1] by its own min and max, denoised, scaled back, -> RGB. A
      constant channel is left as is.

    Meaning of a given ``sigma`` (noise std in the units of the [0, 1] RGB input):

    * scikit-image >= 0.16 (``legacy_sigma=False``, default): without YCbCr, ``sigma`` is used
      as is. With YCbCr and ``rescale_sigma=True``, the RGB sigmas are converted to YCbCr
      (``sqrt(sum_k M[i, k]**2 sigma_k**2)`` with scikit-image's matrix ``M``) and then
      divided by the channel's range, i.e. they follow the image through both rescalings.
      With ``rescale_sigma=False`` only the division by the channel's range is done (this is
      what scikit-image does; it makes sigma tiny, about 1/200 of the value, and is **not**
      the old behaviour).
    * scikit-image <= 0.15 (``legacy_sigma=True``; the version the paper's code ran):
      ``sigma`` is applied unchanged to every channel *after* its rescaling to [0, 1], i.e.
      sigma is a fraction of each YCbCr channel's range; ``rescale_sigma`` is ignored; the
      output is always clipped to [0, 1] (to [-1, 1] for an image with negative values).
      Source: scikit-image v0.14/v0.15 ``skimage/restoration/_denoise.py``, whose docstring
      reads "When YCbCr conversion is done, every color channel is scaled between 0 and 1,
      and `sigma` values are applied to these scaled color channels" and whose
      ``denoise_wavelet`` ends with ``np.clip(out, *clip_range)``. One deviation: 0.15 divided
      a constant YCbCr channel by 0 (NaN output); here it is left as is.

    Output range: scikit-image >= 0.16 does not clip float input, so neither does this
    function by default (``clip=None``), except with ``legacy_sigma=True``. ``clip=True``
    clips to [0, 1] ([-1, 1] for an image with negative values), ``clip=False`` never clips.

    Gradients are true everywhere they exist (through the data-dependent thresholds, the
    median and the per-channel min/max). Where scikit-image's ``max(., eps)`` saturates, the
    gradient through that term is zero, which keeps it finite.

    Args:
        image: RGB (or any-channel without ``convert2ycbcr``) images, float, nominally in
            [0, 1]. float16/bfloat16 input is computed in float32 and cast back.
        sigma: noise standard deviation: None (estimate per channel), a number (all
            channels) or a sequence with one number per channel.
        wavelet: discrete PyWavelets wavelet name (default ``'db1'``, Haar) or a
            ``pywt.Wavelet``.
        mode: ``'soft'`` or ``'hard'`` thresholding.
        wavelet_levels: decomposition levels; default ``max(pywt.dwtn_max_level((H, W),
            wavelet) - 3, 1)``.
        convert2ycbcr: denoise in YCbCr (requires 3 channels).
        method: ``'BayesShrink'`` or ``'VisuShrink'``.
        rescale_sigma: scikit-image >= 0.16 meaning, see above.
        legacy_sigma: scikit-image <= 0.15 semantics, see above.
        clip: output clipping, see above.

    Returns:
        Denoised images, same shape, dtype and device as ``image``.

    Shape:
        - Input: :math:`(N, C, H, W)` (:math:`C = 3` with ``convert2ycbcr``)
        - Output: :math:`(N, C, H, W)`

    Example:
        >>> x = torch.rand(2, 3, 64, 64)
        >>> y = denoise_wavelet(x, sigma=0.01, convert2ycbcr=True)
        >>> y.shape
        torch.Size([2, 3, 64, 64])
    """
    w = _check_options(
        wavelet, mode, wavelet_levels, method, convert2ycbcr, rescale_sigma, legacy_sigma, clip
    )
    check_image_batch(image, "image", channels=3 if convert2ycbcr else None)
    n, c, h, wd = image.shape
    sig = _check_sigma(sigma, c)

    orig_dtype = image.dtype
    x = image if orig_dtype in (torch.float32, torch.float64) else image.float()
    s = _sigma_tensor(sig, n, c, x)
    if clip is None:
        clip = legacy_sigma
    args = (w, str(method), str(mode), wavelet_levels, convert2ycbcr, rescale_sigma, legacy_sigma, clip)

    per_image = c * h * wd
    chunk = max(1, _CPU_CHUNK_ELEMENTS // max(per_image, 1))
    if x.device.type != "cpu" or n <= chunk:
        out = _denoise_batch(x, s, *args)
    else:
        # Cache blocking on the CPU: the same batched computation on blocks of a few images
        # whose working set stays in the CPU cache (about 10x faster than streaming a large
        # batch through memory once per elementary operation). Results are identical.
        out = torch.empty_like(x)
        # the allocator is looked up here, at call time, so that it can be swapped (tests count
        # the buffers it creates)
        bufs = None if torch.is_grad_enabled() and x.requires_grad else Buffers({}, _ws_empty)

        def run(i: int, size: int) -> int:
            dst = out[i : i + size]
            si = None if s is None else s[i : i + size]
            block = _denoise_batch(x[i : i + size], si, *args, bufs=bufs, out=dst)
            if block.data_ptr() != dst.data_ptr():
                dst.copy_(block)
            return i + size

        i = 0
        if bufs is not None:
            key = (c, h, wd, x.dtype, torch.get_num_threads(), chunk)
            if key not in _BLOCK_CHOICE and n >= 2 * chunk * sum(_CPU_BLOCK_FACTORS):
                cost: dict[int, float] = {}  # seconds per image, per candidate factor
                for f in _CPU_BLOCK_FACTORS:
                    i = run(i, f * chunk)  # cold: its buffers are made
                    t0 = time.perf_counter()
                    i = run(i, f * chunk)
                    cost[f] = (time.perf_counter() - t0) / (f * chunk)
                _BLOCK_CHOICE[key] = min(cost, key=cost.__getitem__)
            chunk *= _BLOCK_CHOICE.get(key, 1)
        while i < n:
            i = run(i, chunk)
    return out.to(orig_dtype)


class WaveletDenoise(Purifier):
    """Wavelet denoising purifier (stage 1 of Mustafa et al.), see :func:`denoise_wavelet`.

    Same options as :func:`denoise_wavelet`, keyword-only and validated here, once. Unlike the
    function (which follows scikit-image >= 0.16 and does not clip float input), the purifier
    clips its output to [0, 1] by default (``clip=True``) so that it maps images in [0, 1] to
    images in [0, 1]. The paper's setting is ``WaveletDenoise(sigma=0.01,
    convert2ycbcr=True, legacy_sigma=True)`` (scikit-image 0.15 semantics).

    Args:
        sigma: noise standard deviation (None: estimated per channel).
        wavelet: discrete PyWavelets wavelet (default Haar, ``'db1'``).
        mode: ``'soft'`` or ``'hard'``.
        wavelet_levels: decomposition levels (default: max level minus 3, at least 1).
        convert2ycbcr: denoise in YCbCr.
        method: ``'BayesShrink'`` or ``'VisuShrink'``.
        rescale_sigma: scikit-image >= 0.16 sigma rescaling in YCbCr.
        legacy_sigma: scikit-image <= 0.15 semantics.
        clip: clip the output to [0, 1] (None: as :func:`denoise_wavelet`).

    Shape:
        - Input: :math:`(N, 3, H, W)` in [0, 1]
        - Output: :math:`(N, 3, H, W)`

    Example:
        >>> wd = WaveletDenoise(sigma=0.01, convert2ycbcr=True)
        >>> wd(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 3, 32, 32])
    """

    differentiable = True
    reference = (
        "Mustafa et al., IEEE TIP 2020 (wavelet denoising stage); BayesShrink: Chang, Yu, "
        "Vetterli, IEEE TIP 2000; VisuShrink: Donoho & Johnstone, Biometrika 1994"
    )

    def __init__(
        self,
        *,
        sigma: SigmaLike = None,
        wavelet: WaveletLike = "db1",
        mode: str = "soft",
        wavelet_levels: int | None = None,
        convert2ycbcr: bool = False,
        method: str = "BayesShrink",
        rescale_sigma: bool = True,
        legacy_sigma: bool = False,
        clip: bool | None = True,
    ) -> None:
        super().__init__()
        w = _check_options(
            wavelet, mode, wavelet_levels, method, convert2ycbcr, rescale_sigma, legacy_sigma, clip
        )
        self.sigma = _check_sigma(sigma, 3)
        self.wavelet = wavelet if isinstance(wavelet, str) else w
        self.mode = mode
        self.wavelet_levels = None if wavelet_levels is None else int(wavelet_levels)
        self.convert2ycbcr = convert2ycbcr
        self.method = method
        self.rescale_sigma = rescale_sigma
        self.legacy_sigma = legacy_sigma
        self.clip = clip

    def purify(self, x: Tensor) -> Tensor:
        """Denoise ``x`` with the stored options."""
        return denoise_wavelet(
            x,
            sigma=self.sigma,
            wavelet=self.wavelet,
            mode=self.mode,
            wavelet_levels=self.wavelet_levels,
            convert2ycbcr=self.convert2ycbcr,
            method=self.method,
            rescale_sigma=self.rescale_sigma,
            legacy_sigma=self.legacy_sigma,
            clip=self.clip,
        )

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        name = self.wavelet if isinstance(self.wavelet, str) else self.wavelet.name
        return (
            f"sigma={self.sigma!r}, wavelet={name!r}, mode={self.mode!r}, "
            f"wavelet_levels={self.wavelet_levels!r}, convert2ycbcr={self.convert2ycbcr}, "
            f"method={self.method!r}, rescale_sigma={self.rescale_sigma}, "
            f"legacy_sigma={self.legacy_sigma}, clip={self.clip}"
        )
