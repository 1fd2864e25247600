"""The compiled AVX-512 Winograd kernel (``_winograd_avx512.c``) behind ``winograd.conv3x3_leaky``:
built at install where a C compiler exists; equal to float64 direct convolution on odd sizes,
partial bands and every channel count the network uses, with and without bias, LeakyReLU and
zero padding;
bit for bit the same on any number of threads; equal to the PyTorch Winograd path; used exactly
where it fits, and never where ``ONEDNN_MAX_CPU_ISA`` caps the process below AVX-512; bad
arguments refused with a message."""

from __future__ import annotations

import platform
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F

import srdefense.purification.sr_models.winograd as winograd

needs_native = pytest.mark.skipif(
    not winograd.native_available(),
    reason="the compiled Winograd kernel does not run here "
    "(not built, no AVX-512F, or ONEDNN_MAX_CPU_ISA caps it)",
)


def _case(n: int, c: int, k: int, h: int, w: int, seed: int, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(k, c, 3, 3, generator=g) / (3 * c**0.5)
    b = torch.randn(k, generator=g) if bias else None
    return x, weight, b


def _reference(x, weight, b, slope, pad=0):
    y = F.conv2d(x.double(), weight.double(), None if b is None else b.double(), padding=pad)
    return y if slope is None else F.leaky_relu(y, slope)


def _run(x, weight, b, slope, pad=0):
    w_nhwc = weight.contiguous(memory_format=torch.channels_last)
    return winograd.conv3x3_leaky(x, w_nhwc, winograd.winograd_weight(weight), b, slope, pad)


@pytest.fixture
def native_calls(monkeypatch):
    """The calls that reached the compiled kernel, by input channels."""
    calls: list[int] = []
    real = winograd._native_conv

    def counting(x, u, bias, slope, pad=0):
        calls.append(x.shape[1])
        return real(x, u, bias, slope, pad)

    monkeypatch.setattr(winograd, "_native_conv", counting)
    return calls


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64") or sys.platform == "win32",
    reason="the extension is built only on x86-64 outside Windows",
)
def test_the_kernel_was_built_where_a_c_compiler_exists():
    """An optional extension fails its build silently: this is the check that it did not."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the install goes on without the kernel")
    assert winograd.native_built(), "setup.py's optional extension was not built: see `pip install -e . -v`"


@needs_native
@pytest.mark.parametrize(
    ("n", "c", "k", "h", "w", "bias", "slope", "pad"),
    [
        (1, 16, 64, 3, 3, True, 0.1, 0),  # one output pixel: one partial tile
        (2, 16, 64, 5, 8, True, 0.1, 0),  # odd output rows, even columns
        (1, 64, 128, 9, 7, False, 0.1, 0),  # no bias
        (3, 32, 128, 17, 20, True, None, 0),  # no LeakyReLU: the plain convolution
        (1, 128, 128, 26, 27, True, 0.2, 0),  # 300 tiles: several bands, the last one short
        (4, 128, 256, 30, 31, True, 0.1, 0),  # the network's widest layer, odd columns
        (2, 256, 128, 11, 12, False, None, 2),  # the backward pass's input gradient of that layer
        (1, 64, 64, 1, 2, True, 0.1, 2),  # padding only but for one row: every read at an edge
        (2, 32, 64, 6, 9, True, None, 1),  # "same" padding
    ],
)
def test_equals_float64_direct_convolution(native_calls, n, c, k, h, w, bias, slope, pad):
    x, weight, b = _case(n, c, k, h, w, seed=h * 100 + w, bias=bias)
    y = _run(x, weight, b, slope, pad)
    ref = _reference(x, weight, b, slope, pad)
    assert native_calls == [c]
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    # F(2x2, 3x3) costs about a decimal digit against direct convolution (4e-7 .. 3e-6 seen)
    assert (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    if slope is not None:  # negative outputs were scaled, not clipped
        assert (y < 0).any()


@needs_native
def test_the_same_bits_on_any_number_of_threads(native_calls):
    """Each output is computed by one thread with the same code: threads change nothing."""
    x, weight, b = _case(2, 64, 128, 23, 21, seed=7)
    u = winograd.winograd_weight(weight)
    outs = [winograd._native_conv(x, u, b, 0.1)]
    before = torch.get_num_threads()
    try:
        for threads in (1, 3, 16):  # 16: more threads than the 6 bands of 242 tiles
            torch.set_num_threads(threads)
            outs.append(winograd._native_conv(x, u, b, 0.1))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert len(native_calls) == 4


@needs_native
def test_agrees_with_the_pytorch_winograd_path(monkeypatch, native_calls):
    """Both paths of ``conv3x3_leaky`` on the same inputs: the compiled one and, with
    ``USE_NATIVE`` off, the strided-tensor one."""
    x, weight, b = _case(2, 64, 128, 19, 14, seed=3)
    fast = [_run(x, weight, b, 0.1, pad) for pad in (0, 2)]
    monkeypatch.setattr(winograd, "USE_NATIVE", False)
    assert not winograd.native_available()
    slow = [_run(x, weight, b, 0.1, pad) for pad in (0, 2)]
    assert native_calls == [64, 64]
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == s.shape and (f - s).abs().max().item() <= 1e-5 * s.abs().max().item()


@needs_native
def test_used_only_where_it_fits(native_calls):
    """Channel counts off its blocking, a non-channels-last input, and float64 go to the
    PyTorch code, which gives the same results; neither path takes a tensor that asks for
    gradients outside ``torch.no_grad()``."""
    x, weight, b = _case(1, 24, 40, 7, 8, seed=1)  # 24 inputs, 40 outputs
    assert (_run(x, weight, b, 0.1).double() - _reference(x, weight, b, 0.1)).abs().max() < 1e-5
    x, weight, b = _case(1, 64, 96, 7, 8, seed=2)  # 96 outputs: not a multiple of 64
    _run(x, weight, b, 0.1)
    x, weight, b = _case(1, 64, 128, 7, 8, seed=3)
    _run(x.contiguous(), weight, b, 0.1)  # NCHW
    _run(x.double(), weight.double(), b.double(), 0.1)
    assert native_calls == []
    msg = "x requires grad, and conv3x3_leaky has no autograd: use conv3x3_leaky_autograd"
    with pytest.raises(ValueError, match=msg):
        _run(x.clone().requires_grad_(True), weight, b, 0.1)  # rather than a result without gradient
    with torch.no_grad():
        _run(x.clone().requires_grad_(True), weight, b, 0.1)
    assert native_calls == [64]
    _run(x, weight, b, 0.1)
    assert native_calls == [64, 64]


def test_native_available_follows_the_build_the_switch_the_cpu_and_onednns_cap(monkeypatch):
    class FakeKernel:
        def __init__(self, cpu: bool) -> None:
            self.cpu = cpu

        def cpu_supported(self) -> bool:
            return self.cpu

    for built, use, cpu, cap_ok, expected in [
        (True, True, True, True, True),
        (False, True, True, True, False),  # not built
        (True, False, True, True, False),  # USE_NATIVE off
        (True, True, False, True, False),  # no AVX-512F on this CPU
        (True, True, True, False, False),  # ONEDNN_MAX_CPU_ISA=AVX2 and the like
    ]:
        monkeypatch.setattr(winograd, "_native", FakeKernel(cpu) if built else None)
        monkeypatch.setattr(winograd, "USE_NATIVE", use)
        monkeypatch.setattr(winograd, "avx512_conv_kernels", lambda cap_ok=cap_ok: cap_ok)
        assert winograd.native_built() is built
        assert winograd.native_available() is expected


@pytest.mark.skipif(not winograd.native_built(), reason="the compiled Winograd kernel was not built here")
def test_bad_arguments_are_refused():
    kernel = winograd._native
    assert kernel is not None
    if not kernel.cpu_supported():
        with pytest.raises(RuntimeError, match="this CPU has no AVX-512F"):
            kernel.conv3x3_leaky(1, 1, 0, 1, 1, 4, 4, 16, 64, 0.1, True, 1)
        return
    x = torch.zeros(1, 4, 4, 16)
    u = torch.zeros(16, 16, 64)
    y = torch.zeros(1, 2, 2, 64)
    ptrs = (x.data_ptr(), u.data_ptr(), 0, y.data_ptr())
    for n, h, w, c, k, pad, threads in [
        (1, 4, 4, 24, 64, 0, 1),  # C_in not a multiple of 16
        (1, 4, 4, 16, 96, 0, 1),  # C_out not a multiple of 64
        (1, 2, 4, 16, 64, 0, 1),  # smaller than the kernel
        (1, 4, 4, 16, 64, 3, 1),  # more padding than a full convolution's
        (0, 4, 4, 16, 64, 0, 1),  # no image
        (1, 4, 4, 16, 64, 0, 0),  # no thread
    ]:
        msg = rf"multiple of 16, C_out a multiple of 64.*n={n} h={h} w={w} pad={pad}"
        with pytest.raises(ValueError, match=msg):
            kernel.conv3x3_leaky(*ptrs, n, h, w, c, k, pad, 0.1, True, threads)
    with pytest.raises(ValueError, match="null data address"):
        kernel.conv3x3_leaky(0, *ptrs[1:], 1, 4, 4, 16, 64, 0, 0.1, True, 1)
    w16 = torch.zeros(64, 16, 3, 3)
    with pytest.raises(ValueError, match=r"x: expected H, W >= 3 for a 3x3 convolution with pad=0, got 2x5"):
        winograd.conv3x3_leaky(torch.zeros(1, 16, 2, 5), w16, u, None, 0.1)
    with pytest.raises(ValueError, match=r"pad: expected 0, 1 or 2, got 3"):
        winograd.conv3x3_leaky(torch.zeros(1, 16, 2, 5), w16, u, None, 0.1, pad=3)
    # the extension itself does the work it was given: all-zero inputs, LeakyReLU, a bias of 0
    y.fill_(7.0)
    kernel.conv3x3_leaky(*ptrs, 1, 4, 4, 16, 64, 0, 0.1, True, 1)
    assert torch.equal(y, torch.zeros_like(y))
