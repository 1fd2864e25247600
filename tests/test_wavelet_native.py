"""The compiled 2-tap kernel of the wavelet denoiser (``wavelet/_haar_native.c``): built at install
where a C compiler exists; equal to the float64 PyTorch engine on odd sizes, every level count
(more than the plane supports included), both threshold rules, with and without a per-plane
scale (0 for a constant plane) and for other 2-tap filters; the same bits on any number of
threads; used for exactly the float32 soft-threshold inference calls; bad arguments refused."""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import pywt
import torch

import srdefense.purification.wavelet.engine as engine
from srdefense.purification.wavelet import denoise_wavelet
from srdefense.purification.wavelet.haar import HaarKernel
from srdefense.purification.wavelet.transform import _taps

needs_native = pytest.mark.skipif(
    not engine.native_available(), reason="the compiled wavelet kernel was not built"
)


def _kernel(dtype: torch.dtype, wavelet: str | pywt.Wavelet = "db1") -> HaarKernel:
    w = pywt.Wavelet(wavelet) if isinstance(wavelet, str) else wavelet
    return HaarKernel(_taps(w, dtype), dtype, torch.device("cpu"))


def _planes(b: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, h, w, generator=g)
    sigma = 0.02 + 0.1 * torch.rand(b, generator=g)
    scale = 0.5 + torch.rand(b, generator=g)
    return x, sigma, scale


@pytest.fixture
def native_calls(monkeypatch):
    calls: list[tuple[int, ...]] = []
    real = engine._native_denoise

    def counting(x, *args):
        calls.append(tuple(x.shape))
        return real(x, *args)

    monkeypatch.setattr(engine, "_native_denoise", counting)
    return calls


@pytest.mark.skipif(sys.platform == "win32", reason="the extension is not built on Windows")
def test_the_kernel_was_built_where_a_c_compiler_exists():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the install goes on without the kernel")
    assert engine._native is not None, "the optional extension was not built: see `pip install -e . -v`"


@needs_native
@pytest.mark.parametrize(
    ("b", "h", "w", "levels"),
    [(3, 224, 224, 4), (2, 37, 20, 3), (4, 1, 1, 2), (2, 2, 3, 1), (1, 17, 64, 6), (2, 9, 11, 9)],
)
@pytest.mark.parametrize("method", ["BayesShrink", "VisuShrink"])
@pytest.mark.parametrize("scaled", [False, True])
def test_equals_the_float64_engine(native_calls, b, h, w, levels, method, scaled):
    """Odd sizes at every level, a 1-pixel plane, more levels than the plane has (9 on 9 x 11)."""
    x, sigma, scale = _planes(b, h, w, seed=h * 100 + w)
    if scaled:
        scale[0] = 0.0  # a constant channel: left unchanged
    sc = scale if scaled else None
    y = engine.denoise_planes(x, sigma, sc, _kernel(torch.float32), levels, method, "soft")
    assert native_calls == [(b, h, w)]
    with torch.no_grad():
        sc64 = None if sc is None else sc.double()
        k64 = _kernel(torch.float64)
        ref = engine.denoise_planes(x.double(), sigma.double(), sc64, k64, levels, method, "soft")
    assert y.shape == (b, h, w) and y.dtype == torch.float32
    assert (y.double() - ref).abs().max().item() <= 1e-5
    if scaled:  # thresholds of 0: analysis and synthesis only, float32 rounding over the levels
        assert (y[0] - x[0]).abs().max().item() <= 1e-5
    moved = (y - x)[1:] if scaled else y - x  # the planes with a non-zero scale
    if h * w > 4 and moved.numel():  # the denoiser did something
        assert moved.abs().max().item() > 1e-3


@needs_native
def test_other_two_tap_filters(native_calls):
    """The matrices come from the filter taps: a non-orthogonal 2-tap filter bank as well."""
    bank = [[0.6, 0.8], [-0.8, 0.6], [0.6, 0.8], [0.8, -0.6]]
    wav = pywt.Wavelet("two-tap", filter_bank=bank)
    x, sigma, scale = _planes(2, 13, 10, seed=5)
    y = engine.denoise_planes(x, sigma, scale, _kernel(torch.float32, wav), 3, "BayesShrink", "soft")
    k64 = _kernel(torch.float64, wav)
    ref = engine.denoise_planes(x.double(), sigma.double(), scale.double(), k64, 3, "BayesShrink", "soft")
    assert native_calls == [(2, 13, 10)]
    assert (y.double() - ref).abs().max().item() <= 1e-5


@needs_native
def test_the_same_bits_on_any_number_of_threads():
    x, sigma, scale = _planes(7, 45, 38, seed=2)
    k = _kernel(torch.float32)
    before = torch.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 16):
            torch.set_num_threads(threads)
            outs.append(engine.denoise_planes(x, sigma, scale, k, 4, "BayesShrink", "soft"))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])


@needs_native
def test_used_only_for_float32_soft_inference(native_calls, monkeypatch):
    x, sigma, scale = _planes(2, 12, 12, seed=1)
    k32 = _kernel(torch.float32)
    engine.denoise_planes(x, sigma, scale, k32, 2, "BayesShrink", "hard")
    k64 = _kernel(torch.float64)
    engine.denoise_planes(x.double(), sigma.double(), scale.double(), k64, 2, "BayesShrink", "soft")
    xg = x.clone().requires_grad_(True)
    engine.denoise_planes(xg, sigma, scale, k32, 2, "BayesShrink", "soft").sum().backward()
    assert xg.grad is not None
    assert native_calls == []
    monkeypatch.setattr(engine, "USE_NATIVE", False)
    assert not engine.native_available()
    engine.denoise_planes(x, sigma, scale, k32, 2, "BayesShrink", "soft")
    assert native_calls == []
    monkeypatch.setattr(engine, "USE_NATIVE", True)
    with torch.no_grad():
        engine.denoise_planes(xg, sigma, scale, k32, 2, "BayesShrink", "soft")
    assert native_calls == [(2, 12, 12)]


@needs_native
def test_denoise_wavelet_matches_its_pytorch_path(monkeypatch):
    """The paper's setting end to end (YCbCr, BayesShrink, blocks of images): both paths agree."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 3, 40, 33, generator=g)
    opts = dict(sigma=0.04, wavelet="db1", mode="soft", convert2ycbcr=True, method="BayesShrink")
    with torch.no_grad():
        fast = denoise_wavelet(x, **opts)
        monkeypatch.setattr(engine, "USE_NATIVE", False)
        slow = denoise_wavelet(x, **opts)
    assert np.abs((fast - slow).numpy()).max() <= 1e-5


@pytest.mark.skipif(engine._native is None, reason="the compiled wavelet kernel was not built")
def test_bad_arguments_are_refused():
    kernel = engine._native
    assert kernel is not None
    x = torch.zeros(1, 4, 4)
    y = torch.zeros(1, 4, 4)
    s = torch.zeros(1)
    ana = [0.0] * 16
    ptrs = (x.data_ptr(), y.data_ptr(), s.data_ptr(), 0)
    bad = [(1, 0, 4, 1, 1), (1, 4, 4, 0, 1), (1, 4, 4, 33, 1), (1, 4, 4, 1, 0), (-1, 4, 4, 1, 1)]
    for b, h, w, levels, threads in bad:
        msg = rf"levels <= 32 and threads >= 1; got b={b} h={h} w={w} levels={levels}"
        with pytest.raises(ValueError, match=msg):
            kernel.denoise(*ptrs, b, h, w, levels, ana, ana, False, threads)
    with pytest.raises(ValueError, match="ana and syn must be sequences of 16 floats"):
        kernel.denoise(*ptrs, 1, 4, 4, 1, [0.0] * 15, ana, False, 1)
    with pytest.raises(ValueError, match="null data address"):
        kernel.denoise(0, *ptrs[1:], 1, 4, 4, 1, ana, ana, False, 1)
    # an all-zero synthesis matrix writes zeros: the kernel did write its output
    y.fill_(3.0)
    kernel.denoise(*ptrs, 1, 4, 4, 1, ana, ana, False, 1)
    assert torch.equal(y, torch.zeros_like(y))
