"""Winograd F(2x2, 3x3) of upconv7's float32 paths (inference and autograd): equal to the
direct convolution to float rounding on every band split and odd edge, gradients included,
parameter gradients only when asked, used for exactly the wide layers (its threshold), switched off by
``USE_WINOGRAD``; on by default where oneDNN has no AVX-512 convolutions or the compiled kernel
runs (its own tests: ``test_winograd_native.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import _eval_helpers
import srdefense._onednn as onednn
import srdefense.purification.sr_models.upconv7 as upconv7_mod
import srdefense.purification.sr_models.winograd as winograd
from srdefense.purification import create_sr_model

_one_thread = _eval_helpers._one_thread  # small tensors: one thread


@pytest.fixture(autouse=True)
def _winograd_on(monkeypatch):
    """Winograd forced on, whatever this CPU's default (:func:`upconv7.winograd_enabled`)."""
    monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", True)


def _reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Direct convolution and LeakyReLU in float64."""
    return F.leaky_relu(F.conv2d(x.double(), w.double(), b.double()), 0.1)


@pytest.mark.parametrize("pad", [0, 2])
@pytest.mark.parametrize("tiles_per_band", [1, 5, 13, 2048])
@pytest.mark.parametrize("shape", [(3, 12, 10), (2, 9, 14), (1, 11, 7), (2, 3, 3), (1, 4, 21)])
def test_equals_direct_convolution(monkeypatch, tiles_per_band, shape, pad):
    """Bands of part of a tile row, several rows, several images, a last short band; odd rows
    and columns (the thin direct strips); the smallest input (one output pixel); the VALID and
    the full (``pad=2``, as in the backward pass) convolution."""
    n, h, w = shape
    g = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(n, 24, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(40, 24, 3, 3, generator=g) / 15
    bias = torch.randn(40, generator=g)
    monkeypatch.setattr(winograd, "TILES_PER_BAND", tiles_per_band)
    w_nhwc = weight.contiguous(memory_format=torch.channels_last)
    y = winograd.conv3x3_leaky(x, w_nhwc, winograd.winograd_weight(weight), bias, 0.1, pad)
    ref = F.leaky_relu(F.conv2d(x.double(), weight.double(), bias.double(), padding=pad), 0.1)
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    scale = ref.abs().max().item()
    assert (y.double() - ref).abs().max().item() <= 2e-6 * scale


def test_winograd_weight_is_the_transformed_kernel():
    """``G g G^T`` at tile position (a, b), checked element by element for one channel pair."""
    w = torch.randn(2, 3, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u = winograd.winograd_weight(w)
    g = torch.tensor(winograd._G, dtype=torch.float64)
    assert u.shape == (16, 3, 2)
    k = g @ w[1, 2] @ g.T
    assert torch.allclose(u[:, 2, 1].view(4, 4), k, rtol=0, atol=1e-15)
    assert u[5, 2, 1].item() == pytest.approx(w[1, 2].sum().item() / 4)  # the centre: (1/2)^2 of all taps


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match=r"weight: expected \(C_out, C_in, 3, 3\), got \(4, 2, 5, 5\)"):
        winograd.winograd_weight(torch.zeros(4, 2, 5, 5))
    x = torch.zeros(1, 8, 6, 6).contiguous(memory_format=torch.channels_last)
    msg = r"u: expected \(16, 8, C_out\) for 8 input channels, got \(16, 4, 3\)"
    with pytest.raises(ValueError, match=msg):
        winograd.conv3x3_leaky(x, torch.zeros(3, 8, 3, 3), torch.zeros(16, 4, 3), torch.zeros(3), 0.1)


def test_upconv7_runs_its_wide_layers_by_winograd(monkeypatch):
    """The fused float32 path: the three layers with 64 or more inputs go through Winograd, and
    the result equals the plain path and the float64 reference to 1e-5 (odd sizes included)."""
    if not upconv7_mod._HAS_FUSED:
        pytest.skip("this PyTorch build has no oneDNN fused convolution (the plain path runs)")
    net = create_sr_model("upconv7")
    x = torch.rand(2, 3, 21, 18, generator=torch.Generator().manual_seed(4))
    calls: list[int] = []
    real = winograd.conv3x3_leaky

    def counting(x, w, u, b, slope):
        calls.append(x.shape[1])
        return real(x, w, u, b, slope)

    monkeypatch.setattr(winograd, "conv3x3_leaky", counting)
    with torch.no_grad():
        fast = net(x)
        assert calls == [64, 128, 128]
        monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", False)  # switched off
        direct = net(x)
        assert calls == [64, 128, 128]
        monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", True)
        monkeypatch.setattr(upconv7_mod, "WINOGRAD_MIN_CHANNELS", 128)  # the cache follows it
        net(x)
        assert calls == [64, 128, 128, 128, 128]
        monkeypatch.setattr(upconv7_mod, "_HAS_FUSED", False)
        plain = net(x)
        ref = create_sr_model("upconv7").double()(x.double())
    assert (fast - plain).abs().max() <= 1e-5 and (direct - plain).abs().max() <= 1e-5
    assert (fast.double() - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("shape", [(2, 12, 11), (1, 9, 14), (1, 3, 3)])
def test_autograd_gradients_equal_the_direct_convolution(shape):
    """Input, weight and bias gradients (and the output) against float64 direct convolution."""
    n, h, w = shape
    g = torch.Generator().manual_seed(h * 10 + w)
    x = torch.randn(n, 24, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    weight = torch.nn.Parameter(torch.randn(40, 24, 3, 3, generator=g) / 15)
    bias = torch.nn.Parameter(torch.randn(40, generator=g))
    y = winograd.conv3x3_leaky_autograd(x, weight, bias, 0.1)
    gy = torch.randn(y.shape, generator=g)
    (y * gy).sum().backward()
    xd, wd, bd = (t.detach().double().requires_grad_(True) for t in (x, weight, bias))
    yd = _reference(xd, wd, bd)
    pre = F.conv2d(xd, wd, bd).detach()  # no input within rounding of the LeakyReLU's kink
    assert pre.abs().min() >= 1e-5 * pre.abs().max()
    (yd * gy.double()).sum().backward()
    pairs = ((y.detach(), yd.detach()), (x.grad, xd.grad), (weight.grad, wd.grad), (bias.grad, bd.grad))
    for got, ref in pairs:
        assert got is not None and ref is not None and got.shape == ref.shape
        assert (got.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()


def test_parameter_gradients_only_when_the_backward_pass_uses_them(monkeypatch):
    """``autograd.grad(loss, x)`` (an attack step) skips the weight gradients, as the built-in
    convolution does; ``loss.backward()`` and ``autograd.grad(loss, weight)`` compute them."""
    calls: list[tuple[bool, bool]] = []
    real = winograd._param_grads

    def counting(g, x, weight, w, b):
        calls.append((w, b))
        return real(g, x, weight, w, b)

    monkeypatch.setattr(winograd, "_param_grads", counting)
    conv = torch.nn.Conv2d(8, 16, 3)
    x = torch.rand(1, 8, 7, 6).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = winograd.conv3x3_leaky_autograd(x, conv.weight, conv.bias, 0.1)
    (gx,) = torch.autograd.grad(y.sum(), x, retain_graph=True)
    assert calls == [] and conv.weight.grad is None and gx.abs().sum() > 0
    (gw,) = torch.autograd.grad(y.sum(), conv.weight, retain_graph=True)
    assert calls == [(True, True)]
    y.sum().backward()
    assert len(calls) == 2 and conv.weight.grad is not None
    torch.testing.assert_close(conv.weight.grad, gw)
    conv.requires_grad_(False)  # frozen weights: nothing to compute, nothing to ask
    winograd.conv3x3_leaky_autograd(x, conv.weight, conv.bias, 0.1).sum().backward()
    assert len(calls) == 2


def test_upconv7_gradient_runs_its_wide_layers_by_winograd(monkeypatch):
    """The autograd path: the same three layers, the input gradient equal to the plain path's
    to 1e-5 relative; bf16 and float64 keep the plain convolutions."""
    net = create_sr_model("upconv7")
    calls: list[int] = []
    real = winograd.conv3x3_leaky_autograd

    def counting(x, w, b, slope):
        calls.append(x.shape[1])
        return real(x, w, b, slope)

    monkeypatch.setattr(winograd, "conv3x3_leaky_autograd", counting)
    # A LeakyReLU input within float rounding (~1e-7 of the layer's largest) of 0 could take the
    # other branch in one of the two paths; this image (seed chosen) keeps every input of the
    # wide layers at least 5e-6 of their largest away from 0, checked here in float64
    x = torch.rand(1, 3, 6, 5, generator=torch.Generator().manual_seed(35))
    h = F.pad(x.double(), (7, 7, 7, 7), mode="replicate")
    with torch.no_grad():
        for i, conv in enumerate(create_sr_model("upconv7").double().convs):
            pre = conv(h)
            assert i < 3 or pre.abs().min() >= 5e-6 * pre.abs().max()
            h = F.leaky_relu(pre, 0.1)

    def grad() -> torch.Tensor:
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        return torch.autograd.grad((out * out).sum(), xi)[0]

    fast = grad()
    assert calls == [64, 128, 128]
    monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", False)
    plain = grad()
    assert calls == [64, 128, 128]
    assert (fast - plain).abs().max() <= 1e-5 * plain.abs().max()
    monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", True)
    xd = x.double().requires_grad_(True)
    create_sr_model("upconv7").double()(xd).sum().backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        xb = x.clone().requires_grad_(True)
        net(xb).float().sum().backward()
    assert calls == [64, 128, 128]
    if upconv7_mod._HAS_FUSED:
        assert all(u is None for _, _, u in net._fused_weights(torch.bfloat16))
        wino = [u is not None for _, _, u in net._fused_weights(torch.float32)]
        assert wino == [False] * 3 + [True] * 3 + [False]


@pytest.mark.parametrize(("avx512", "use_native"), [(True, False), (True, True), (False, False)])
def test_by_default_winograd_runs_where_it_beats_onednn(monkeypatch, avx512, use_native):
    """``USE_WINOGRAD = None``: on where oneDNN has no AVX-512 convolutions, and on AVX-512 CPUs
    only where the compiled kernel runs (there the PyTorch Winograd lost 1.7x to oneDNN's direct
    convolutions); in both the inference and the gradient path."""
    if not upconv7_mod._HAS_FUSED:
        pytest.skip("this PyTorch build has no oneDNN fused convolution (the plain path runs)")
    monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", None)
    monkeypatch.setattr(upconv7_mod, "avx512_conv_kernels", lambda: avx512)
    monkeypatch.setattr(winograd, "USE_NATIVE", use_native)
    net = create_sr_model("upconv7")
    x = torch.rand(1, 3, 8, 9, generator=torch.Generator().manual_seed(1))
    calls: list[str] = []
    fwd, grad = winograd.conv3x3_leaky, winograd.conv3x3_leaky_autograd
    monkeypatch.setattr(winograd, "conv3x3_leaky", lambda *a, **k: calls.append("fwd") or fwd(*a, **k))
    monkeypatch.setattr(winograd, "conv3x3_leaky_autograd", lambda *a: calls.append("grad") or grad(*a))
    # the real answer of this machine where a kernel is asked for: built, and the CPU has its ISA
    on_expected = not avx512 or (use_native and winograd.native_available())
    # on: 3 inference layers, then 3 autograd layers (each running the kernel), then 3 backward
    on = ["fwd"] * 3 + ["grad", "fwd"] * 3 + ["fwd"] * 3
    assert upconv7_mod.winograd_enabled() is on_expected
    with torch.no_grad():
        net(x)
    net(x.clone().requires_grad_(True)).sum().backward()
    assert calls == (on if on_expected else [])
    wino = [u is not None for _, _, u in net._fused_weights(torch.float32)]
    assert wino == [False] * 3 + [on_expected] * 3 + [False]
    monkeypatch.setattr(upconv7_mod, "USE_WINOGRAD", False)  # forced off, on any CPU
    assert not upconv7_mod.winograd_enabled()


@pytest.mark.parametrize(
    ("cap", "cpu_avx512", "expected"),
    [("", True, True), ("", False, False), ("AVX2", True, False), ("avx512_core", True, True)],
)
def test_avx512_conv_kernels_follows_the_cpu_and_onednns_cap(monkeypatch, cap, cpu_avx512, expected):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_supported", lambda: cpu_avx512)
    onednn.avx512_conv_kernels.cache_clear()
    try:
        assert onednn.avx512_conv_kernels() is expected
    finally:
        onednn.avx512_conv_kernels.cache_clear()


@pytest.mark.parametrize(
    ("env", "cap", "expected"),
    [
        ("ONEDNN_MAX_CPU_ISA", "", True),
        ("ONEDNN_MAX_CPU_ISA", "AVX2", True),
        ("ONEDNN_MAX_CPU_ISA", "avx512_core_amx", True),
        ("ONEDNN_MAX_CPU_ISA", "AVX", False),
        ("DNNL_MAX_CPU_ISA", "sse41", False),  # the older name, lower case
    ],
)
def test_isa_cap_allows_avx2_follows_onednns_cap(monkeypatch, env, cap, expected):
    """The compiled AVX2 kernels step aside under a cap below AVX2, like oneDNN's."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(env, cap)
    onednn.isa_cap_allows_avx2.cache_clear()
    try:
        assert onednn.isa_cap_allows_avx2() is expected
    finally:
        onednn.isa_cap_allows_avx2.cache_clear()
