"""Wavelet denoising: parity with scikit-image / PyWavelets, gradients, contracts, relationships."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
import pywt
import torch
from PIL import Image

skimage = pytest.importorskip("skimage")
from skimage import data as skdata  # noqa: E402
from skimage.color import rgb2ycbcr, ycbcr2rgb  # noqa: E402
from skimage.restoration import denoise_wavelet as sk_denoise  # noqa: E402
from skimage.restoration._denoise import _wavelet_threshold  # noqa: E402

from srdefense.data.samples import embedded_samples  # noqa: E402
from srdefense.purification import wavelet as W  # noqa: E402
from srdefense.purification.color import rgb_to_ycbcr, ycbcr_to_rgb  # noqa: E402
from srdefense.purification.wavelet import (  # noqa: E402
    WaveletDenoise,
    denoise_wavelet,
    dwt2,
    estimate_sigma_dwt,
    idwt2,
    wavedec2,
    waverec2,
)

# ------------------------------------------------------------------------------------------
# photos (crops keep the suite fast; sizes cover even, odd, non-square, not multiples of 2^L)
# ------------------------------------------------------------------------------------------

_SIZES = [(64, 64), (63, 77), (100, 60), (97, 130)]


def _embedded(i: int, size: tuple[int, int]) -> np.ndarray:
    path, _ = embedded_samples()[i]
    img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    h, w = size
    return np.ascontiguousarray(img[100 : 100 + h, 120 : 120 + w])


def _skdata(name: str, size: tuple[int, int]) -> np.ndarray:
    img = getattr(skdata, name)().astype(np.float64) / 255.0
    h, w = size
    return np.ascontiguousarray(img[80 : 80 + h, 100 : 100 + w])


PHOTOS = {
    "imagenet00": lambda s: _embedded(0, s),
    "imagenet07": lambda s: _embedded(7, s),
    "imagenet13": lambda s: _embedded(13, s),
    "astronaut": lambda s: _skdata("astronaut", s),
    "chelsea": lambda s: _skdata("chelsea", s),
    "coffee": lambda s: _skdata("coffee", s),
}


def _t(img: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(img).permute(2, 0, 1)[None].to(dtype)


def _np(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


def _sk(img: np.ndarray, **kw) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sk_denoise(img, channel_axis=-1, **kw)


TOL = {torch.float64: 1e-5, torch.float32: 1e-4}
NP_DTYPE = {torch.float64: np.float64, torch.float32: np.float32}

# the worst difference seen in the parity grid, per dtype (reported by test_zz_report_parity)
_WORST: dict[torch.dtype, float] = {torch.float64: 0.0, torch.float32: 0.0}


def _dequantized(img: np.ndarray) -> np.ndarray:
    """``img`` (8-bit levels) plus a seeded uniform dither within each level's bin.

    In YCbCr with an estimated sigma, parity on 8-bit photos tests the CPU: the estimate is a
    median over the *non-zero* finest diagonal coefficients, and on 8-bit data many of them
    are zero in exact arithmetic (equal steps between neighbours) but come out as exact 0 or
    as +-1 ulp depending on whether the colour conversion used fused multiply-add, which
    numpy's BLAS and torch's kernels each choose per CPU (seen: 3.5e-4 in float64 under
    ``ATEN_CPU_CAPABILITY=default``). On continuous values no coefficient is zero up to
    rounding, so the estimate is continuous and the parity exact up to rounding on any CPU.
    The masking of exact zeros itself is tested in ``test_estimate_sigma_numpy_median_convention``.
    """
    rng = np.random.default_rng(int(img.size))
    return np.clip(img + rng.uniform(-0.5 / 255, 0.5 / 255, img.shape), 0.0, 1.0)


def _estimate_in_ycbcr(kw: dict) -> bool:
    return bool(kw.get("convert2ycbcr")) and kw.get("sigma") is None


def _check_parity(img: np.ndarray, dtype: torch.dtype, **kw) -> None:
    if _estimate_in_ycbcr(kw):
        img = _dequantized(img)
    ref = _sk(img.astype(NP_DTYPE[dtype]), **kw)
    out = denoise_wavelet(_t(img, dtype), **kw)
    assert out.dtype == dtype
    err = float(np.abs(_np(out) - ref.astype(np.float64)).max())
    _WORST[dtype] = max(_WORST[dtype], err)
    assert err <= TOL[dtype], f"{kw}: max abs diff {err}"


# ------------------------------------------------------------------------------------------
# parity with skimage.restoration.denoise_wavelet(..., channel_axis=-1)
# ------------------------------------------------------------------------------------------

_CORE = list(
    itertools.product(
        ["db1", "db4"],
        ["BayesShrink", "VisuShrink"],
        ["soft", "hard"],
        [False, True],  # convert2ycbcr
        [None, 0.02, (0.01, 0.03, 0.05)],  # sigma
        [True, False],  # rescale_sigma
    )
)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("wavelet", "method", "mode", "ycc", "sigma", "rescale"), _CORE)
def test_parity_core_grid(dtype, wavelet, method, mode, ycc, sigma, rescale):
    # one photo and one size per combination, cycling through photos and sizes
    i = _CORE.index((wavelet, method, mode, ycc, sigma, rescale))
    name = list(PHOTOS)[i % len(PHOTOS)]
    size = _SIZES[(i // len(PHOTOS) + i) % len(_SIZES)]
    img = PHOTOS[name](size)
    _check_parity(
        img,
        dtype,
        sigma=sigma,
        wavelet=wavelet,
        method=method,
        mode=mode,
        convert2ycbcr=ycc,
        rescale_sigma=rescale,
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("wavelet", ["haar", "sym4", "coif1", "bior2.2", "db2", "rbio1.3"])
@pytest.mark.parametrize("ycc", [False, True])
@pytest.mark.parametrize("sigma", [None, 0.03])
def test_parity_more_wavelets(dtype, wavelet, ycc, sigma):
    img = PHOTOS["coffee"]((70, 90))
    if sigma is None and dtype == torch.float32 and wavelet == "bior2.2":
        # at the right/bottom boundary PyWavelets sums filter taps in another order; on 8-bit
        # levels in float32 this flips which finest-band coefficients are exactly 0, and the
        # noise estimate (a median over non-zeros) jumps (1e-3): checked on continuous values
        img = _dequantized(img)
    _check_parity(img, dtype, sigma=sigma, wavelet=wavelet, convert2ycbcr=ycc)
    _check_parity(
        img, dtype, sigma=sigma, wavelet=wavelet, convert2ycbcr=ycc, method="VisuShrink", mode="hard"
    )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("wavelet", ["db1", "db4"])
@pytest.mark.parametrize("levels", [1, 2, 4, 7])
@pytest.mark.parametrize("photo", ["imagenet07", "chelsea"])
def test_parity_explicit_levels(dtype, wavelet, levels, photo):
    # 7 levels on 51x45 exceeds the maximum level: extensions longer than the signal
    img = PHOTOS[photo]((51, 45))
    _check_parity(img, dtype, wavelet=wavelet, wavelet_levels=levels, convert2ycbcr=True)
    _check_parity(img, dtype, sigma=0.05, wavelet=wavelet, wavelet_levels=levels)


@pytest.mark.parametrize("photo", list(PHOTOS))
def test_parity_paper_setting_full_photos(photo):
    """The paper's setting on a larger crop of every photo, both dtypes."""
    img = PHOTOS[photo]((160, 150))
    for dtype in (torch.float64, torch.float32):
        _check_parity(img, dtype, sigma=0.01, convert2ycbcr=True)
        _check_parity(img, dtype, convert2ycbcr=True)


def test_parity_batch_of_different_photos():
    imgs = [PHOTOS[name]((64, 80)) for name in PHOTOS]
    for kw in (
        dict(convert2ycbcr=True),
        dict(sigma=0.02),
        dict(sigma=0.02, convert2ycbcr=True, wavelet="db4"),
    ):
        batch = [_dequantized(i) for i in imgs] if _estimate_in_ycbcr(kw) else imgs
        out = denoise_wavelet(torch.stack([_t(i, torch.float64)[0] for i in batch]), **kw)
        for k, img in enumerate(batch):
            np.testing.assert_allclose(_np(out[k : k + 1]), _sk(img, **kw), atol=1e-10, rtol=0)


# ------------------------------------------------------------------------------------------
# legacy_sigma: scikit-image <= 0.15 semantics, against a faithful numpy re-implementation
# ------------------------------------------------------------------------------------------


def _denoise_wavelet_015(
    image,
    sigma=None,
    wavelet="db1",
    mode="soft",
    wavelet_levels=None,
    convert2ycbcr=False,
    method="BayesShrink",
):
    """scikit-image 0.15's denoise_wavelet(multichannel=True) for float images, in numpy.

    Re-implemented from scikit-image v0.14/v0.15 ``skimage/restoration/_denoise.py``: the
    per-channel thresholding (``_wavelet_threshold``) is unchanged since then and is called
    from the installed scikit-image; what 0.15 did differently is here: sigma passed unchanged
    to each (rescaled) YCbCr channel, and the output always clipped.
    """
    if sigma is None or np.isscalar(sigma):
        sigma = [sigma] * image.shape[-1]
    kw = dict(wavelet=wavelet, method=method, mode=mode, wavelet_levels=wavelet_levels)
    if convert2ycbcr:
        out = rgb2ycbcr(image)
        for i in range(3):
            lo, hi = out[..., i].min(), out[..., i].max()
            channel = (out[..., i] - lo) / (hi - lo)
            den = _wavelet_threshold(channel, sigma=sigma[i], **kw)
            den = np.clip(den, *((-1, 1) if channel.min() < 0 else (0, 1)))  # the inner call clipped
            out[..., i] = den * (hi - lo) + lo
        out = ycbcr2rgb(out)
    else:
        out = np.empty_like(image)
        for c in range(image.shape[-1]):
            out[..., c] = _wavelet_threshold(image[..., c], sigma=sigma[c], **kw)
    clip_range = (-1, 1) if image.min() < 0 else (0, 1)
    return np.clip(out, *clip_range)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("ycc", [True, False])
@pytest.mark.parametrize("sigma", [None, 0.01, 0.04, (0.01, 0.02, 0.03)])
@pytest.mark.parametrize("wavelet", ["db1", "db4"])
def test_legacy_sigma_matches_skimage_015(dtype, ycc, sigma, wavelet):
    for name in ("imagenet00", "astronaut"):
        img = PHOTOS[name]((90, 75))
        if ycc and sigma is None:  # see _dequantized
            img = _dequantized(img)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = _denoise_wavelet_015(
                img.astype(NP_DTYPE[dtype]), sigma=sigma, wavelet=wavelet, convert2ycbcr=ycc
            )
        out = denoise_wavelet(
            _t(img, dtype), sigma=sigma, wavelet=wavelet, convert2ycbcr=ycc, legacy_sigma=True
        )
        err = float(np.abs(_np(out) - ref).max())
        assert err <= TOL[dtype], err
        assert 0.0 <= out.min() and out.max() <= 1.0


def test_legacy_sigma_is_not_rescale_sigma_false():
    """In YCbCr, 0.15 used sigma as a fraction of each channel's range; 0.16+ differs."""
    img = PHOTOS["chelsea"]((96, 96))
    x = _t(img, torch.float64)
    legacy = denoise_wavelet(x, sigma=0.04, convert2ycbcr=True, legacy_sigma=True)
    modern = denoise_wavelet(x, sigma=0.04, convert2ycbcr=True).clamp(0, 1)
    no_rescale = denoise_wavelet(x, sigma=0.04, convert2ycbcr=True, rescale_sigma=False).clamp(0, 1)
    assert (legacy - modern).abs().max() > 1e-3
    assert (legacy - no_rescale).abs().max() > 1e-3
    # without YCbCr the only difference is the clipping
    a = denoise_wavelet(x, sigma=0.04, legacy_sigma=True)
    b = denoise_wavelet(x, sigma=0.04).clamp(0, 1)
    assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------
# transforms and colour conversion against PyWavelets / scikit-image
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("wavelet", ["db1", "db2", "db4", "sym4", "coif1", "bior2.2", "db8"])
@pytest.mark.parametrize("shape", [(16, 16), (17, 13), (5, 9), (3, 2), (1, 7), (33, 40)])
def test_dwt_idwt_match_pywt(wavelet, shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape))
    a, (dh, dv, dd) = pywt.dwt2(x, wavelet)
    ta, td = dwt2(torch.from_numpy(x), wavelet)
    np.testing.assert_allclose(ta.numpy(), a, atol=1e-12)
    np.testing.assert_allclose(td.numpy(), np.stack([dh, dv, dd], axis=1), atol=1e-12)
    np.testing.assert_allclose(
        idwt2(ta, td, wavelet).numpy(), pywt.idwt2((a, (dh, dv, dd)), wavelet), atol=1e-12
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = pywt.wavedecn(x, wavelet, level=3, axes=(1, 2))
        ref = pywt.waverecn(c, wavelet, axes=(1, 2))
    tc = wavedec2(torch.from_numpy(x), wavelet, level=3)
    np.testing.assert_allclose(tc[0].numpy(), c[0], atol=1e-12)
    for j in range(1, 4):
        np.testing.assert_allclose(
            tc[j].numpy(), np.stack([c[j][k] for k in ("da", "ad", "dd")], 1), atol=1e-12
        )
    np.testing.assert_allclose(waverec2(tc, wavelet).numpy(), ref, atol=1e-12)


def test_dwt_leading_dims_and_perfect_reconstruction():
    x = torch.rand(2, 3, 21, 30, dtype=torch.float64)
    coeffs = wavedec2(x, "sym4", level=2)
    assert coeffs[1].shape[:3] == (2, 3, 3)
    torch.testing.assert_close(waverec2(coeffs, "sym4")[..., :21, :30], x)


def test_two_tap_fast_path_equals_generic_path():
    rng = np.random.default_rng(1)
    planes = torch.from_numpy(rng.random((4, 37, 50)))
    sigma = torch.tensor([0.01, 0.05, 0.1, 0.2], dtype=torch.float64)
    w = pywt.Wavelet("db1")
    taps = W._taps(w, torch.float64)
    for method, mode in itertools.product(["BayesShrink", "VisuShrink"], ["soft", "hard"]):
        ref = W._denoise_planes(planes, sigma, w, method, mode, None)
        fast = W._denoise_planes_two_tap(planes, sigma, None, taps, w, method, mode, None)
        torch.testing.assert_close(fast, ref, atol=1e-12, rtol=0)


def test_color_matches_skimage():
    img = PHOTOS["astronaut"]((40, 50))
    for dtype in (torch.float64, torch.float32):
        ycc = rgb_to_ycbcr(_t(img, dtype))
        ref = rgb2ycbcr(img.astype(NP_DTYPE[dtype]))
        # equal up to the last bit: whether a product is fused with the sum (FMA) is chosen per
        # CPU by numpy's BLAS and by torch's kernels alike, so bit equality would test the CPU
        ulp = np.spacing(NP_DTYPE[dtype](240))
        np.testing.assert_allclose(_np(ycc).astype(NP_DTYPE[dtype]), ref, rtol=0, atol=2 * ulp)
        back = ycbcr_to_rgb(ycc)
        np.testing.assert_allclose(_np(back), ycbcr2rgb(ref), atol=1e-5 if dtype == torch.float32 else 1e-12)
    with pytest.raises(ValueError, match="3, H, W"):
        rgb_to_ycbcr(torch.rand(1, 4, 5, 5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_equal_pixels_get_bit_equal_ycbcr(dtype):
    """What the noise estimate's zero mask relies on, exact on every CPU: the conversion is a
    function of the pixel alone (no dependence on its position, e.g. a vector loop's tail)."""
    g = torch.Generator().manual_seed(0)
    palette = torch.randint(0, 256, (3, 7), generator=g).to(dtype) / 255
    which = torch.randint(0, 7, (63 * 77,), generator=g)
    ycc = rgb_to_ycbcr(palette[:, which].reshape(1, 3, 63, 77))[0].reshape(3, -1)
    for k in range(7):
        same = ycc[:, which == k]
        assert torch.equal(same, same[:, :1].expand_as(same)), k


def test_estimate_sigma_numpy_median_convention():
    import scipy.stats

    d = torch.tensor([[[0.0, 1.0, -2.0], [3.0, 0.0, -4.0]]], dtype=torch.float64)
    # non-zero |d| = 1, 2, 3, 4 -> median 2.5 (even count: mean of the middle two)
    expected = 2.5 / scipy.stats.norm.ppf(0.75)
    assert estimate_sigma_dwt(d).item() == pytest.approx(expected, rel=1e-15)
    assert estimate_sigma_dwt(torch.zeros(2, 3, 3)).tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------------------
# gradients
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["BayesShrink", "VisuShrink"])
@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("wavelet", ["db1", "db2"])
@pytest.mark.parametrize("ycc", [True, False])
def test_gradcheck(method, mode, wavelet, ycc):
    # Hard thresholding is piecewise linear: gradcheck's finite differences are exact as long
    # as no coefficient lies within ~1e-6 of its threshold, which holds for this seed; sigma
    # is large enough that some coefficients are zeroed and some kept.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 12, 10, generator=g, dtype=torch.float64, requires_grad=True)
    for sigma in (0.05, None):
        assert torch.autograd.gradcheck(
            lambda t, s=sigma: denoise_wavelet(
                t, sigma=s, wavelet=wavelet, method=method, mode=mode, convert2ycbcr=ycc
            ),
            (x,),
            eps=1e-6,
            atol=1e-5,
        )


def test_gradient_finite_where_eps_clamp_and_flat_channels():
    x = torch.full((2, 3, 16, 16), 0.5, dtype=torch.float64)
    x[1] = torch.rand(3, 16, 16, dtype=torch.float64)
    x.requires_grad_(True)
    for kw in (dict(sigma=0.5), dict(sigma=0.5, convert2ycbcr=True), dict(convert2ycbcr=True), {}):
        y = denoise_wavelet(x, **kw)
        (g,) = torch.autograd.grad(y.square().sum(), x)
        assert torch.isfinite(g).all(), kw
        torch.testing.assert_close(y[0].detach(), x[0].detach())  # flat image unchanged


# ------------------------------------------------------------------------------------------
# contracts
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("wavelet", ["db1", "db2"])
def test_batch_sizes(n, wavelet):
    x = torch.rand(n, 3, 20, 18)
    for kw in (dict(convert2ycbcr=True), dict(sigma=0.02), dict(convert2ycbcr=True, sigma=0.02)):
        y = denoise_wavelet(x, wavelet=wavelet, **kw)
        assert y.shape == x.shape and y.dtype == x.dtype


def test_batch_consistency_and_chunking(monkeypatch):
    x = torch.rand(4, 3, 33, 40, dtype=torch.float64)
    for kw in (dict(convert2ycbcr=True, sigma=0.01), dict(convert2ycbcr=True), dict(wavelet="db4")):
        full = denoise_wavelet(x, **kw)
        torch.testing.assert_close(denoise_wavelet(x[2:3], **kw), full[2:3], atol=1e-12, rtol=0)
        monkeypatch.setattr(W, "_CPU_CHUNK_ELEMENTS", 1)  # one image per block
        torch.testing.assert_close(denoise_wavelet(x, **kw), full, atol=1e-12, rtol=0)
        monkeypatch.undo()


@pytest.mark.parametrize("fast", [1, 4])
def test_block_size_is_calibrated_once_without_changing_results(monkeypatch, fast):
    """The first large call times two blocks of each candidate size on its own first images,
    keeps the fastest per image (here made so by a fake clock) for the rest of that call and
    the next ones, and the result equals denoising each image alone."""
    x = torch.rand(23, 3, 12, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    kw = dict(sigma=0.01, convert2ycbcr=True, legacy_sigma=True, clip=True)
    singles = torch.cat([denoise_wavelet(x[i : i + 1], **kw) for i in range(len(x))])
    monkeypatch.setattr(W, "_CPU_CHUNK_ELEMENTS", 3 * 12 * 10)  # one image per base block
    monkeypatch.setattr(W, "_BLOCK_CHOICE", {})
    sizes: list[int] = []
    real_batch = W._denoise_batch

    def recording(xb, *a, **k):
        sizes.append(len(xb))
        clock[0] += 1.0 if len(xb) == fast else 100.0  # per block: the `fast` size wins
        return real_batch(xb, *a, **k)

    clock = [0.0]
    monkeypatch.setattr(W, "_denoise_batch", recording)
    monkeypatch.setattr(W.time, "perf_counter", lambda: clock[0])
    with torch.no_grad():
        got = denoise_wavelet(x, **kw)
    torch.testing.assert_close(got, singles, atol=1e-12, rtol=0)
    assert sizes[:4] == [1, 1, 4, 4]  # calibration: 2 blocks of each candidate (10 images)
    rest = sizes[4:]
    assert sum(sizes) == len(x) and all(v == fast for v in rest[:-1]) and rest[-1] <= fast
    assert list(W._BLOCK_CHOICE.values()) == [fast]
    sizes.clear()
    with torch.no_grad():
        torch.testing.assert_close(denoise_wavelet(x, **kw), singles, atol=1e-12, rtol=0)
    assert sizes[0] == fast  # no second calibration for the same shape


def test_chunked_gradient_equals_unchunked(monkeypatch):
    x = torch.rand(3, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    (g1,) = torch.autograd.grad(denoise_wavelet(x, sigma=0.05, convert2ycbcr=True).sum(), x)
    monkeypatch.setattr(W, "_CPU_CHUNK_ELEMENTS", 1)
    (g2,) = torch.autograd.grad(denoise_wavelet(x, sigma=0.05, convert2ycbcr=True).sum(), x)
    torch.testing.assert_close(g1, g2)


def test_input_untouched_and_noncontiguous():
    x = torch.rand(2, 3, 24, 30, dtype=torch.float64)
    before = x.clone()
    y = denoise_wavelet(x, sigma=0.02, convert2ycbcr=True)
    assert torch.equal(x, before)
    nc = torch.rand(2, 30, 24, 3, dtype=torch.float64).permute(0, 3, 2, 1)  # (2, 3, 24, 30)
    assert not nc.is_contiguous()
    torch.testing.assert_close(
        denoise_wavelet(nc, convert2ycbcr=True), denoise_wavelet(nc.contiguous(), convert2ycbcr=True)
    )
    assert y.shape == x.shape


def test_module_equals_function_and_metadata():
    x = torch.rand(2, 3, 32, 32)
    m = WaveletDenoise(sigma=0.01, convert2ycbcr=True, clip=None)
    torch.testing.assert_close(m(x), denoise_wavelet(x, sigma=0.01, convert2ycbcr=True))
    m2 = WaveletDenoise(sigma=0.01, convert2ycbcr=True, legacy_sigma=True, wavelet="db2", mode="hard")
    torch.testing.assert_close(
        m2(x),
        denoise_wavelet(
            x, sigma=0.01, convert2ycbcr=True, legacy_sigma=True, wavelet="db2", mode="hard", clip=True
        ),
    )
    default = WaveletDenoise(sigma=0.05)
    y = default(x)
    assert y.min() >= 0 and y.max() <= 1  # the purifier clips by default
    assert WaveletDenoise.differentiable and WaveletDenoise.scale == 1
    assert "Chang" in WaveletDenoise.reference and "Donoho" in WaveletDenoise.reference
    assert "Mustafa" in WaveletDenoise.reference
    assert "db1" in repr(default)
    xg = x.double().requires_grad_(True)
    WaveletDenoise(sigma=0.01, convert2ycbcr=True)(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


def test_half_precision_and_device_agnostic_dtype():
    x = torch.rand(1, 3, 16, 16)
    y = denoise_wavelet(x.half(), sigma=0.02)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), denoise_wavelet(x.half().float(), sigma=0.02), atol=1e-3, rtol=0)


# ------------------------------------------------------------------------------------------
# relationships
# ------------------------------------------------------------------------------------------


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / (a - b).square().mean()))


@pytest.mark.parametrize("photo", ["astronaut", "imagenet13"])
def test_denoising_raises_psnr(photo):
    clean = _t(PHOTOS[photo]((128, 128)), torch.float64)
    g = torch.Generator().manual_seed(0)
    noisy = (clean + 0.08 * torch.randn(clean.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    for kw in (dict(convert2ycbcr=True), dict(sigma=0.08), dict(method="VisuShrink", wavelet="db4")):
        den = denoise_wavelet(noisy, **kw)
        assert _psnr(den, clean) > _psnr(noisy, clean) + 1.0, kw


def test_larger_sigma_lowers_detail_energy():
    x = _t(PHOTOS["coffee"]((96, 96)), torch.float64)

    def detail_energy(y: torch.Tensor) -> float:
        return float(sum(d.square().sum() for d in wavedec2(y, "db1", level=3)[1:]))

    energies = [
        detail_energy(denoise_wavelet(x, sigma=s, convert2ycbcr=True)) for s in (0.0, 0.01, 0.03, 0.1)
    ]
    assert energies[0] == pytest.approx(detail_energy(x), rel=1e-9)  # sigma 0: identity
    assert all(a > b for a, b in itertools.pairwise(energies)), energies


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "exc", "match"),
    [
        (dict(wavelet="foo"), ValueError, "wavelet: unknown wavelet 'foo'"),
        (dict(wavelet="morl"), ValueError, "wavelet: unknown wavelet"),
        (dict(wavelet=3), TypeError, "wavelet:"),
        (dict(method="Bayes"), ValueError, "method: expected 'BayesShrink' or 'VisuShrink'"),
        (dict(mode="medium"), ValueError, "mode: expected 'soft' or 'hard'"),
        (dict(wavelet_levels=0), ValueError, "wavelet_levels:"),
        (dict(wavelet_levels=1.5), ValueError, "wavelet_levels:"),
        (dict(sigma=-0.1), ValueError, "sigma:"),
        (dict(sigma=float("nan")), ValueError, "sigma:"),
        (dict(sigma=(0.1, 0.2)), ValueError, "sigma: expected 3 values"),
        (dict(sigma="a"), ValueError, "sigma:"),
        (dict(convert2ycbcr=1), TypeError, "convert2ycbcr:"),
        (dict(legacy_sigma="yes"), TypeError, "legacy_sigma:"),
        (dict(clip=1), TypeError, "clip:"),
    ],
)
def test_bad_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        WaveletDenoise(**kw)
    with pytest.raises(exc, match=match):
        denoise_wavelet(torch.rand(1, 3, 8, 8), **kw)


def test_bad_images():
    with pytest.raises(TypeError, match="image"):
        denoise_wavelet(np.zeros((1, 3, 8, 8)))
    with pytest.raises(TypeError, match="floating-point"):
        denoise_wavelet(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="N, C, H, W"):
        denoise_wavelet(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="3 channels"):
        denoise_wavelet(torch.rand(1, 1, 8, 8), convert2ycbcr=True)
    with pytest.raises(ValueError, match="3 channels"):
        WaveletDenoise()(torch.rand(1, 4, 8, 8))
    # one channel without YCbCr is fine for the function
    assert denoise_wavelet(torch.rand(2, 1, 8, 8), sigma=0.1).shape == (2, 1, 8, 8)


def test_zz_report_parity():
    """Runs last in this file: the grid's worst differences are within the tolerances."""
    assert _WORST[torch.float64] <= 1e-5 and _WORST[torch.float32] <= 1e-4, _WORST


@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize("method", ["BayesShrink", "VisuShrink"])
def test_autograd_path_equals_the_in_place_inference_path(mode, method):
    img = _t(PHOTOS["chelsea"]((48, 56)), torch.float64)
    kw = dict(sigma=0.03, convert2ycbcr=True, mode=mode, method=method)
    with torch.no_grad():
        fast = denoise_wavelet(img, **kw)
    x = img.clone().requires_grad_(True)
    slow = denoise_wavelet(x, **kw)
    assert torch.equal(slow.detach(), fast)
    assert torch.equal(x.detach(), img)  # the input is never modified


def test_blocked_path_reuses_buffers_and_equals_per_image(monkeypatch):
    """The CPU blocks share one workspace (no per-block temporaries); results stay per image."""
    x = torch.rand(5, 3, 30, 26, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    kw = dict(sigma=0.01, convert2ycbcr=True, legacy_sigma=True, clip=True)
    singles = torch.cat([denoise_wavelet(x[i : i + 1], **kw) for i in range(5)])
    created = []
    real_empty = W._ws_empty

    def counting(ws, key, shape, like):
        if ws is not None and (key, shape, like.dtype, like.device) not in ws:
            created.append(key)
        return real_empty(ws, key, shape, like)

    monkeypatch.setattr(W, "_ws_empty", counting)
    monkeypatch.setattr(W, "_CPU_CHUNK_ELEMENTS", 2 * 3 * 30 * 26)  # blocks of 2, 2, 1
    blocked = denoise_wavelet(x, **kw)
    torch.testing.assert_close(blocked, singles, atol=1e-12, rtol=0)
    # one set of buffers for the blocks of 2 and one for the last block of 1, not one per block
    assert created and len(created) == 2 * len(set(created))
