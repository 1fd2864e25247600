"""The compiled Winograd kernels (``_winograd_native.c``: AVX-512 and AVX2 copies of one template)
behind ``winograd.conv3x3_leaky``: built at install where a C compiler exists; each copy this CPU
runs equal to float64 direct convolution on odd sizes, partial bands and every channel count the
network uses, with and without bias, LeakyReLU and zero padding; the copies bit for bit the same
as each other, and on any number of threads; equal to the PyTorch Winograd path; the fastest copy
used exactly where it fits, AVX2 under ``ONEDNN_MAX_CPU_ISA=AVX2`` and none under a cap below it;
bad arguments refused with a message."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import srdefense._onednn as onednn
import srdefense.purification.sr_models.winograd as winograd

CPU_ISAS: tuple[str, ...] = tuple(winograd._native.cpu_isas()) if winograd._native is not None else ()
"""The kernel copies this CPU runs, fastest first (empty where the extension was not built)."""

needs_native = pytest.mark.skipif(
    not winograd.native_available(),
    reason="no compiled Winograd kernel runs here "
    "(not built, no AVX2/AVX-512F, or ONEDNN_MAX_CPU_ISA caps it)",
)


@pytest.fixture(params=["avx512", "avx2"])
def isa(request, monkeypatch):
    """Each kernel copy in turn, as the one ``conv3x3_leaky`` dispatches to (skipped where the
    CPU lacks it)."""
    if winograd._native is None or request.param not in CPU_ISAS or not winograd.USE_NATIVE:
        pytest.skip(f"this CPU does not run the {request.param} kernel (it runs {CPU_ISAS or 'none'})")
    monkeypatch.setattr(winograd, "native_isa", lambda: request.param if winograd.USE_NATIVE else None)
    return request.param


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
    """The calls that reached a compiled kernel, as (input channels, ISA)."""
    calls: list[tuple[int, str | None]] = []
    real = winograd._native_conv

    def counting(x, u, bias, slope, pad=0, isa=None):
        calls.append((x.shape[1], isa))
        return real(x, u, bias, slope, pad, isa)

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
    # every x86-64 CPU since 2013-2015 (Haswell, Zen) has AVX2 and FMA: say so where it has
    assert set(CPU_ISAS) <= {"avx512", "avx2"} and list(CPU_ISAS) == sorted(CPU_ISAS, reverse=True)


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
        (2, 8, 16, 7, 5, True, 0.1, 1),  # the AVX2 kernel's smallest blocking (not AVX-512's)
        (1, 24, 48, 10, 13, True, 0.1, 0),  # three vectors in, three micro-kernel widths out (AVX2)
    ],
)
def test_equals_float64_direct_convolution(isa, native_calls, n, c, k, h, w, bias, slope, pad):
    ci, co = winograd.native_channel_multiples(isa)
    fits = c % ci == 0 and k % co == 0
    x, weight, b = _case(n, c, k, h, w, seed=h * 100 + w, bias=bias)
    y = _run(x, weight, b, slope, pad)
    ref = _reference(x, weight, b, slope, pad)
    assert native_calls == ([(c, isa)] if fits else [])
    assert y.shape == ref.shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    # F(2x2, 3x3) costs about a decimal digit against direct convolution (4e-7 .. 3e-6 seen)
    assert (y.double() - ref).abs().max().item() <= 2e-6 * ref.abs().max().item()
    if slope is not None:  # negative outputs were scaled, not clipped
        assert (y < 0).any()


@pytest.mark.skipif(len(CPU_ISAS) < 2, reason=f"this CPU runs one kernel copy only ({CPU_ISAS or 'none'})")
@pytest.mark.parametrize("pad", [0, 2])
def test_the_avx512_and_avx2_kernels_give_the_same_bits(pad):
    """One template, the same operations in the same order for every output: only the vector
    width differs, so the AVX2 copy (what a CPU without AVX-512 runs) equals the AVX-512 one."""
    x, weight, b = _case(2, 64, 128, 23, 21, seed=11)
    u = winograd.winograd_weight(weight)
    outs = [winograd._native_conv(x, u, b, 0.1, pad, isa) for isa in ("avx512", "avx2")]
    assert torch.equal(outs[0], outs[1])
    assert (outs[0] < 0).any()


def test_the_same_bits_on_any_number_of_threads(isa, native_calls):
    """Each output is computed by one thread with the same code: threads change nothing."""
    x, weight, b = _case(2, 64, 128, 23, 21, seed=7)
    u = winograd.winograd_weight(weight)
    outs = [winograd._native_conv(x, u, b, 0.1, isa=isa)]
    before = torch.get_num_threads()
    try:
        for threads in (1, 3, 16):  # 16: more threads than the 6 bands of 242 tiles
            torch.set_num_threads(threads)
            outs.append(winograd._native_conv(x, u, b, 0.1, isa=isa))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert native_calls == [(64, isa)] * 4


def test_agrees_with_the_pytorch_winograd_path(isa, monkeypatch, native_calls):
    """Both paths of ``conv3x3_leaky`` on the same inputs: the compiled one and, with
    ``USE_NATIVE`` off, the strided-tensor one."""
    x, weight, b = _case(2, 64, 128, 19, 14, seed=3)
    fast = [_run(x, weight, b, 0.1, pad) for pad in (0, 2)]
    monkeypatch.setattr(winograd, "USE_NATIVE", False)
    assert not winograd.native_available() and winograd.native_isa() is None
    slow = [_run(x, weight, b, 0.1, pad) for pad in (0, 2)]
    assert native_calls == [(64, isa), (64, isa)]
    for f, s in zip(fast, slow, strict=True):
        assert f.shape == s.shape and (f - s).abs().max().item() <= 1e-5 * s.abs().max().item()


def test_used_only_where_it_fits(isa, native_calls):
    """Channel counts off its blocking, a non-channels-last input, and float64 go to the
    PyTorch code, which gives the same results; neither path takes a tensor that asks for
    gradients outside ``torch.no_grad()``."""
    x, weight, b = _case(1, 20, 40, 7, 8, seed=1)  # 20 inputs, 40 outputs: off both blockings
    assert (_run(x, weight, b, 0.1).double() - _reference(x, weight, b, 0.1)).abs().max() < 1e-5
    x, weight, b = _case(1, 64, 72, 7, 8, seed=2)  # 72 outputs: not a multiple of 16 or 64
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
    assert native_calls == [(64, isa)]
    _run(x, weight, b, 0.1)
    assert native_calls == [(64, isa), (64, isa)]


def test_native_isa_follows_the_build_the_switch_the_cpu_and_onednns_cap(monkeypatch):
    class FakeKernel:
        def __init__(self, isas: tuple[str, ...]) -> None:
            self.isas = isas

        def cpu_isas(self) -> tuple[str, ...]:
            return self.isas

    both = ("avx512", "avx2")
    for built, use, cpu, avx512_ok, avx2_ok, expected in [
        (True, True, both, True, True, "avx512"),
        (True, True, ("avx2",), True, True, "avx2"),  # a CPU without AVX-512F (Zen 1-3, most laptops)
        (True, True, both, False, True, "avx2"),  # ONEDNN_MAX_CPU_ISA=AVX2 on an AVX-512 CPU
        (True, True, both, False, False, None),  # ONEDNN_MAX_CPU_ISA=AVX or SSE41
        (True, True, (), True, True, None),  # no AVX2 either
        (False, True, both, True, True, None),  # not built
        (True, False, both, True, True, None),  # USE_NATIVE off
    ]:
        monkeypatch.setattr(winograd, "_native", FakeKernel(cpu) if built else None)
        monkeypatch.setattr(winograd, "USE_NATIVE", use)
        monkeypatch.setattr(winograd, "avx512_conv_kernels", lambda ok=avx512_ok: ok)
        monkeypatch.setattr(winograd, "isa_cap_allows_avx2", lambda ok=avx2_ok: ok)
        assert winograd.native_built() is built
        assert winograd.native_isa() == expected
        assert winograd.native_available() is (expected is not None)


@pytest.mark.skipif("avx2" not in CPU_ISAS, reason="this CPU has no AVX2 and FMA")
@pytest.mark.parametrize(("cap", "expected"), [("AVX2", "avx2"), ("AVX", "None"), ("", None)])
def test_onednns_cap_picks_the_kernel_in_a_fresh_process(cap, expected):
    """The caps are read once per process, so each is set before srdefense is imported; with
    none, the fastest copy the CPU runs (``expected`` None)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")}
    if cap:
        env["ONEDNN_MAX_CPU_ISA"] = cap
    code = "import srdefense.purification.sr_models.winograd as w; print(w.native_isa())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == (expected or CPU_ISAS[0])


@pytest.mark.skipif(not winograd.native_built(), reason="the compiled Winograd kernel was not built here")
def test_bad_arguments_are_refused():
    kernel = winograd._native
    assert kernel is not None
    with pytest.raises(ValueError, match=r"isa: expected 'avx512' or 'avx2', got 'sse2'"):
        kernel.conv3x3_leaky(1, 1, 0, 1, 1, 4, 4, 16, 64, 0, 0.1, True, 1, "sse2")
    with pytest.raises(ValueError, match="isa: expected 'avx512' or 'avx2', got 'neon'"):
        winograd.native_channel_multiples("neon")
    needs = {"avx512": "AVX-512F and FMA", "avx2": "AVX2 and FMA"}
    for isa in needs.keys() - set(CPU_ISAS):
        with pytest.raises(RuntimeError, match=f"isa '{isa}' needs {needs[isa]}, which this CPU lacks"):
            kernel.conv3x3_leaky(1, 1, 0, 1, 1, 4, 4, 16, 64, 0, 0.1, True, 1, isa)
    x = torch.zeros(1, 4, 4, 16)
    u = torch.zeros(16, 16, 64)
    y = torch.zeros(1, 2, 2, 64)
    ptrs = (x.data_ptr(), u.data_ptr(), 0, y.data_ptr())
    for isa in CPU_ISAS:
        ci, co = winograd.native_channel_multiples(isa)
        assert (ci, co) == {"avx512": (16, 64), "avx2": (8, 16)}[isa]
        for n, h, w, c, k, pad, threads in [
            (1, 4, 4, ci + 4, 64, 0, 1),  # C_in not a multiple of one vector
            (1, 4, 4, 16, co + co // 2, 0, 1),  # C_out not a multiple of the micro-kernel's width
            (1, 2, 4, 16, 64, 0, 1),  # smaller than the kernel
            (1, 4, 4, 16, 64, 3, 1),  # more padding than a full convolution's
            (0, 4, 4, 16, 64, 0, 1),  # no image
            (1, 4, 4, 16, 64, 0, 0),  # no thread
        ]:
            msg = rf"\({isa}\).*multiple of {ci}, C_out a multiple of {co}.*n={n} h={h} w={w} pad={pad}"
            with pytest.raises(ValueError, match=msg):
                kernel.conv3x3_leaky(*ptrs, n, h, w, c, k, pad, 0.1, True, threads, isa)
        with pytest.raises(ValueError, match="null data address"):
            kernel.conv3x3_leaky(0, *ptrs[1:], 1, 4, 4, 16, 64, 0, 0.1, True, 1, isa)
        # the extension itself does the work it was given: all-zero inputs, LeakyReLU, a bias of 0
        y.fill_(7.0)
        kernel.conv3x3_leaky(*ptrs, 1, 4, 4, 16, 64, 0, 0.1, True, 1, isa)
        assert torch.equal(y, torch.zeros_like(y))
    w16 = torch.zeros(64, 16, 3, 3)
    with pytest.raises(ValueError, match=r"x: expected H, W >= 3 for a 3x3 convolution with pad=0, got 2x5"):
        winograd.conv3x3_leaky(torch.zeros(1, 16, 2, 5), w16, u, None, 0.1)
    with pytest.raises(ValueError, match=r"pad: expected 0, 1 or 2, got 3"):
        winograd.conv3x3_leaky(torch.zeros(1, 16, 2, 5), w16, u, None, 0.1, pad=3)


@needs_native
def test_the_default_is_the_fastest_copy_the_cpu_and_cap_allow():
    """Without a cap below it, the default is the first copy the CPU runs."""
    cap = onednn._isa_cap()
    if cap:
        pytest.skip(f"ONEDNN_MAX_CPU_ISA={cap} is set here (the fresh-process test covers caps)")
    assert winograd.native_isa() == CPU_ISAS[0]
