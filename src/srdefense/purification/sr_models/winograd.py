"""Winograd F(2x2, 3x3) for the wide VALID 3x3 convolutions of ``upconv7`` in float32.

Used by its inference path (:func:`conv3x3_leaky`) and its gradient path
(:func:`conv3x3_leaky_autograd`, whose input gradient runs through the same kernel).

A 3x3 convolution computes each 2x2 block of outputs from a 4x4 block of inputs with 36
multiplications per input-output channel pair; Winograd's minimal filtering algorithm
(Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016) does it with
16, after linear transforms of the input tile (additions only) and of the weights (once):
``Y = A^T [ (G g G^T) * (B^T d B) ] A``. Across channels the 16 element-wise products become
16 independent matrix products ``(tiles, C_in) @ (C_in, C_out)``, so the heavy work is one
batched GEMM with 4/9 of the direct convolution's multiply-adds.

Why by hand: PyTorch asks oneDNN, which runs every other convolution here, for direct
convolutions only (``alg:convolution_direct`` in ``ONEDNN_VERBOSE``), and no well-kept library
callable from PyTorch offers a Winograd convolution for the CPU. There are two implementations:

* on x86-64 CPUs with AVX2 and FMA, compiled kernels (``_winograd_native.c``, built at install
  as an optional extension; :func:`native_isa`): one template (``_winograd_kernel.h``) compiled
  for AVX-512F and for AVX2, which give the same bits. It keeps each band of 48 tiles in the
  core's cache from the input transform to the output, and its products are a
  register-blocked micro-kernel. Measured on 2-core AMD EPYCs, batch 4 at 224, the 128 -> 256
  layer: on a Zen 5, AVX-512, 0.14-0.15 s against 0.35 s for oneDNN's AVX-512 direct
  convolution (0.27 s for onnxruntime's); on a Zen 3, AVX2, 0.50-0.52 s against 0.97 s for
  oneDNN's and 0.65 s for the PyTorch code below;
* elsewhere, or with :data:`USE_NATIVE` off, the PyTorch code below: the transforms are
  strided tensor additions and the products one ``torch.bmm``. On AVX2 CPUs, where oneDNN's
  direct convolutions are slower, it wins (1.23x on a Zen 1); on AVX-512 ones it loses to them
  (1.7x slower on a Zen 5, where ``torch.bmm`` is MKL's AVX2 code), so
  ``upconv7.USE_WINOGRAD`` keeps it off there.

The work runs in bands of tile rows sized so that the transformed tiles, their products and
the output band stay in the CPU cache (:data:`TILES_PER_BAND`): done over the whole image at
once, the transforms move four times the activations through memory and cost more than the
multiplications they save. The bias is added to the one product whose output-transform
coefficient is 1 for all four outputs (``M[1, 1]``), so it costs 1/16 of a pass.

F(2x2, 3x3) and not a larger tile: its transforms have coefficients 0, +-1 and +-1/2 only, so
in float32 the result differs from the direct convolution by float rounding (about 1e-6
relative on ``upconv7``; the tests bound it); F(4x4, 3x3) saves more multiplications but its
coefficients up to 8 cost one to two decimal digits.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, cast

import torch
from torch import Tensor

from ..._onednn import avx512_conv_kernels, isa_cap_allows_avx2

_native: ModuleType | None
try:
    from . import _winograd_native as _native
except ImportError:  # not built: not x86-64, or no C compiler at install time
    _native = None

USE_NATIVE = True
"""Whether :func:`conv3x3_leaky` may use the compiled kernels (see :func:`native_isa`)."""

TILES_PER_BAND = 2048
"""Target number of 2x2 output tiles per band (all images of the batch, whole tile rows)."""

_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def winograd_weight(weight: Tensor) -> Tensor:
    """The transformed kernel ``G g G^T`` of a ``(C_out, C_in, 3, 3)`` weight: ``(16, C_in, C_out)``.

    Computed in float64 and rounded once to the weight's dtype; index ``4a + b`` is tile
    position ``(a, b)``.
    """
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"weight: expected (C_out, C_in, 3, 3), got {tuple(weight.shape)}")
    g = torch.tensor(_G, dtype=torch.float64, device=weight.device)
    u = torch.einsum("ai,oqij,bj->abqo", g, weight.detach().to(torch.float64), g)
    return u.reshape(16, weight.shape[1], weight.shape[0]).to(weight.dtype).contiguous()


def native_built() -> bool:
    """Whether the compiled kernels were built at install (x86-64 with a C compiler)."""
    return _native is not None


def native_isa() -> str | None:
    """The instruction set whose compiled kernel :func:`conv3x3_leaky` runs here, or ``None``.

    ``"avx512"`` where the CPU has AVX-512F and FMA and ``ONEDNN_MAX_CPU_ISA`` does not cap the
    process below AVX-512 (:func:`srdefense._onednn.avx512_conv_kernels`); otherwise ``"avx2"``
    where it has AVX2 and FMA and no cap below AVX2; otherwise ``None``, as where the kernels
    were not built (:func:`native_built`) or :data:`USE_NATIVE` is off. The CPU is asked by the
    extension itself (``cpuid``); a cap asks for the code paths of an older CPU, and gets them.
    """
    if _native is None or not USE_NATIVE:
        return None
    allowed = {"avx512": avx512_conv_kernels, "avx2": isa_cap_allows_avx2}
    for isa in _native.cpu_isas():  # fastest first
        if allowed[isa]():
            return str(isa)
    return None


def native_available() -> bool:
    """Whether :func:`conv3x3_leaky` runs a compiled kernel here, where shapes fit (:func:`native_isa`)."""
    return native_isa() is not None


def native_channel_multiples(isa: str) -> tuple[int, int]:
    """The compiled ``isa`` kernel takes input and output channel counts in multiples of these.

    ``(16, 64)`` for ``"avx512"``, ``(8, 16)`` for ``"avx2"``: a vector of input channels, and
    the micro-kernel's width in output channels.

    Raises:
        RuntimeError: the kernels were not built.
        ValueError: ``isa`` is neither.
    """
    if _native is None:
        raise RuntimeError("the compiled Winograd kernels were not built (see native_built())")
    ci, co = _native.channel_multiples(isa)
    return int(ci), int(co)


def _native_fits(x: Tensor, u: Tensor, bias: Tensor | None) -> str | None:
    """The compiled kernel that can run this call, or ``None`` (pad and sizes checked by the caller)."""
    isa = native_isa()
    if isa is None:
        return None
    ci, co = native_channel_multiples(isa)
    fits = (
        x.shape[0] >= 1
        and x.shape[1] % ci == 0
        and u.shape[2] % co == 0
        and x.device.type == u.device.type == "cpu"
        and x.dtype == u.dtype == torch.float32
        and (bias is None or (bias.dtype == torch.float32 and bias.device.type == "cpu"))
        and x.is_contiguous(memory_format=torch.channels_last)
    )
    return isa if fits else None


def _native_conv(
    x: Tensor, u: Tensor, bias: Tensor | None, slope: float | None, pad: int = 0, isa: str | None = None
) -> Tensor:
    """:func:`conv3x3_leaky` on the compiled ``isa`` kernel (default: :func:`native_isa`'s).

    Only where :func:`_native_fits` holds.
    """
    isa = isa or native_isa()
    assert _native is not None and isa is not None
    n, c, h, w = x.shape
    co = u.shape[2]
    u = u.contiguous()
    b = None if bias is None else bias.contiguous()
    out = torch.empty((n, h + 2 * pad - 2, w + 2 * pad - 2, co), dtype=x.dtype, device=x.device)
    _native.conv3x3_leaky(
        x.data_ptr(),
        u.data_ptr(),
        0 if b is None else b.data_ptr(),
        out.data_ptr(),
        n,
        h,
        w,
        c,
        co,
        pad,
        0.0 if slope is None else float(slope),
        slope is not None,
        torch.get_num_threads(),
        isa,
    )
    return out.permute(0, 3, 1, 2)


def conv3x3_leaky(
    x: Tensor, weight: Tensor, u: Tensor, bias: Tensor | None, slope: float | None, pad: int = 0
) -> Tensor:
    """3x3 convolution, bias and LeakyReLU(``slope``) by Winograd F(2x2, 3x3).

    Args:
        x: ``(N, C_in, H, W)`` in channels-last memory format, ``H + 2 pad, W + 2 pad >= 3``.
        weight: the kernel, ``(C_out, C_in, 3, 3)`` (for the odd edges).
        u: :func:`winograd_weight` of the kernel, ``(16, C_in, C_out)``.
        bias: ``(C_out,)``, or ``None`` for none.
        slope: the LeakyReLU negative slope, or ``None`` for no activation.
        pad: zeros around ``x`` on every side, 0 to 2 (0: the VALID convolution; 2: the full
            one, as in the backward pass). The compiled kernel reads them without a padded copy.

    Returns:
        ``(N, C_out, H + 2 pad - 2, W + 2 pad - 2)`` in channels-last memory format. No autograd of its own
        (see :func:`conv3x3_leaky_autograd`). On a compiled kernel (:func:`native_isa`, for channel
        counts in its :func:`native_channel_multiples`: 16 in and 64 out on AVX-512, 8 and 16
        on AVX2) the
        partial tiles of an odd last row or column read zeros past the edge and write only the
        valid outputs; in the PyTorch code that row or column is computed by direct
        convolution of the last three input rows or columns.

    Raises:
        ValueError: ``u`` does not match ``x``'s channels, ``pad`` is not 0, 1 or 2, ``x`` padded
            is smaller than 3 x 3, or ``x`` requires grad while gradients are recorded.
    """
    n, c, h, w = x.shape
    if u.dim() != 3 or u.shape[:2] != (16, c):
        raise ValueError(f"u: expected (16, {c}, C_out) for {c} input channels, got {tuple(u.shape)}")
    if pad not in (0, 1, 2):
        raise ValueError(f"pad: expected 0, 1 or 2, got {pad!r}")
    if h + 2 * pad < 3 or w + 2 * pad < 3:
        least = 3 - 2 * pad
        raise ValueError(f"x: expected H, W >= {least} for a 3x3 convolution with pad={pad}, got {h}x{w}")
    if x.requires_grad and torch.is_grad_enabled():
        raise ValueError("x requires grad, and conv3x3_leaky has no autograd: use conv3x3_leaky_autograd")
    isa = _native_fits(x, u, bias)
    if isa is not None:
        return _native_conv(x, u, bias, slope, pad, isa)
    if pad:  # the PyTorch code reads a padded copy
        xp = torch.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=x.dtype, device=x.device).permute(0, 3, 1, 2)
        xp[:, :, pad : pad + h, pad : pad + w] = x
        x, h, w = xp, h + 2 * pad, w + 2 * pad
    co = u.shape[2]
    ho, wo = h - 2, w - 2
    th, tw = ho // 2, wo // 2
    xh = x.permute(0, 2, 3, 1)  # (N, H, W, C), contiguous for a channels-last x
    out = torch.empty((n, ho, wo, co), dtype=x.dtype, device=x.device)
    if th and tw:
        _tiles(xh, u, bias, out[:, : 2 * th, : 2 * tw], th, tw, slope)
    if ho % 2:  # the odd last row and column: thin direct convolutions
        out[:, ho - 1 :] = _direct(xh[:, h - 3 :], weight, bias, slope)
    if wo % 2 and th:
        out[:, : 2 * th, wo - 1 :] = _direct(xh[:, : 2 * th + 2, w - 3 :], weight, bias, slope)
    return out.permute(0, 3, 1, 2)


def _tiles(
    xh: Tensor, u: Tensor, bias: Tensor | None, out: Tensor, th: int, tw: int, slope: float | None
) -> None:
    """The even part of the output, band by band: ``out`` is ``(N, 2 th, 2 tw, C_out)`` (a view)."""
    n, _, w, c = xh.shape
    co = u.shape[2]
    rows = max(1, TILES_PER_BAND // max(1, n * tw))  # tile rows per band, all images at once
    per = max(1, min(n, TILES_PER_BAND // tw)) if rows == 1 else n  # images per band
    dt, dev = xh.dtype, xh.device
    r_buf = torch.empty((4, per, rows, 2 * tw + 2, c), dtype=dt, device=dev)
    v_buf = torch.empty((16, per, rows, tw, c), dtype=dt, device=dev)
    m_buf = torch.empty((16, per * rows * tw, co), dtype=dt, device=dev)
    s_buf = torch.empty((2, 4, per, rows, tw, co), dtype=dt, device=dev)
    o6 = out.unflatten(1, (th, 2)).unflatten(3, (tw, 2))  # (N, th, 2, tw, 2, C_out)
    for n0 in range(0, n, per):
        nn_ = min(per, n - n0)
        for i0 in range(0, th, rows):
            nb = min(rows, th - i0)
            xs = xh[n0 : n0 + nn_, 2 * i0 : 2 * i0 + 2 * nb + 2, : 2 * tw + 2]
            r = r_buf[:, :nn_, :nb]
            d = [xs[:, j : j + 2 * nb : 2] for j in range(4)]  # input rows 2i + j of each tile
            torch.sub(d[0], d[2], out=r[0])
            torch.add(d[1], d[2], out=r[1])
            torch.sub(d[2], d[1], out=r[2])
            torch.sub(d[1], d[3], out=r[3])
            v = v_buf[:, :nn_, :nb]
            for a in range(4):
                e = [r[a][:, :, j : j + 2 * tw : 2] for j in range(4)]  # columns 2k + j
                torch.sub(e[0], e[2], out=v[4 * a])
                torch.add(e[1], e[2], out=v[4 * a + 1])
                torch.sub(e[2], e[1], out=v[4 * a + 2])
                torch.sub(e[1], e[3], out=v[4 * a + 3])
            t = nn_ * nb * tw
            full = nn_ == per and nb == rows
            vv = v_buf.view(16, t, c) if full else v.contiguous().view(16, t, c)
            m = m_buf[:, :t]
            torch.bmm(vv, u, out=m)
            if bias is not None:
                m[5].add_(bias)  # M[1, 1] enters all four outputs with coefficient 1
            m4 = m.view(4, 4, nn_, nb, tw, co)
            s = s_buf[:, :, :nn_, :nb]
            torch.add(m4[0], m4[1], out=s[0]).add_(m4[2])  # output row 0: M0 + M1 + M2
            torch.sub(m4[1], m4[2], out=s[1]).sub_(m4[3])  # output row 1: M1 - M2 - M3
            o = o6[n0 : n0 + nn_, i0 : i0 + nb]
            for ry in range(2):
                sr = s[ry]
                torch.add(sr[0], sr[1], out=o[:, :, ry, :, 0]).add_(sr[2])
                torch.sub(sr[1], sr[2], out=o[:, :, ry, :, 1]).sub_(sr[3])
            if slope is not None:
                torch.nn.functional.leaky_relu_(o, slope)  # while the band is in the cache


def _direct(xh: Tensor, k: Tensor, bias: Tensor | None, slope: float | None) -> Tensor:
    """Direct VALID convolution of an NHWC strip: returns NHWC."""
    y = torch.nn.functional.conv2d(xh.permute(0, 3, 1, 2), k, bias)
    if slope is not None:
        y = torch.nn.functional.leaky_relu_(y, slope)
    return y.permute(0, 2, 3, 1)


def conv3x3_leaky_autograd(x: Tensor, weight: Tensor, bias: Tensor, slope: float) -> Tensor:
    """:func:`conv3x3_leaky` with autograd: the input gradient by Winograd too.

    The input gradient of a VALID 3x3 convolution is the full convolution of the output
    gradient with the kernel flipped and transposed, so it runs through the same kernel with a
    zero padding of 2 (which the compiled kernel reads without making a padded copy). The
    LeakyReLU mask comes from the saved output (its sign is that of the pre-activation, the
    slope being positive), applied by PyTorch's fused ``leaky_relu_backward``.

    The weight and bias gradients use PyTorch's own convolution backward, and only when the
    backward pass will use them: a custom autograd function would otherwise compute them
    whenever the weights require grad, also under ``torch.autograd.grad(loss, x)`` (what every
    attack step asks; PyTorch issue #174017), where the built-in convolution skips them. The
    check asks the autograd engine whether it will run the weights' gradient nodes
    (``torch._C._will_engine_execute_node`` on a view of each, the mechanism of
    ``torch.autograd.graph.register_multi_grad_hook``); where that private call is missing or
    refuses, the gradients are computed.

    Like any change of float rounding, Winograd's can move a LeakyReLU input that lies within
    rounding of 0 to the other branch, where the gradient differs by the slope's factor: the
    direct float32 path does the same against float64 (on a 40 x 36 image both put the input
    gradient 3e-3 from float64's in relative L2 norm, through a few such units), and a
    tiled pass, whose tile grid starts anew in each image tile, against an untiled one.

    Args:
        x: ``(N, C_in, H, W)`` float, channels-last.
        weight: ``(C_out, C_in, 3, 3)``.
        bias: ``(C_out,)``.
        slope: the LeakyReLU negative slope (> 0).

    Returns:
        ``(N, C_out, H - 2, W - 2)``, channels-last.
    """
    if weight.requires_grad and torch.is_grad_enabled():
        weight, bias = weight.view_as(weight), bias.view_as(bias)  # non-leaf: their nodes can be asked
    return cast(Tensor, _Conv3x3Leaky.apply(x, weight, bias, slope))


class _Conv3x3Leaky(torch.autograd.Function):
    """The autograd function of :func:`conv3x3_leaky_autograd`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, slope: float) -> Tensor:
        w_cl = weight.detach().contiguous(memory_format=torch.channels_last)
        y = conv3x3_leaky(x.detach(), w_cl, winograd_weight(weight), bias.detach(), slope)
        ctx.save_for_backward(x, weight, y)
        ctx.slope = slope
        ctx.param_nodes = (weight.grad_fn, bias.grad_fn)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        x, weight, y = ctx.saved_tensors
        # the gradient before the LeakyReLU, in one pass (y > 0 where its input was)
        g = torch.ops.aten.leaky_relu_backward(grad_y, y, ctx.slope, True)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            g = g.contiguous(memory_format=torch.channels_last)
            wt = weight.detach().flip(2, 3).transpose(0, 1)  # (C_in, C_out, 3, 3)
            wt_cl = wt.contiguous(memory_format=torch.channels_last)
            grad_x = conv3x3_leaky(g, wt_cl, winograd_weight(wt), None, None, pad=2)
        if _will_run(ctx.param_nodes, ctx.needs_input_grad[1:3]):
            grad_w, grad_b = _param_grads(g, x, weight, ctx.needs_input_grad[1], ctx.needs_input_grad[2])
        return grad_x, grad_w, grad_b, None


def _param_grads(
    g: Tensor, x: Tensor, weight: Tensor, w: bool, b: bool
) -> tuple[Tensor | None, Tensor | None]:
    """Weight and bias gradients of the VALID 3x3 convolution (PyTorch's own backward)."""
    mask = [False, w, b]
    _, gw, gb = torch.ops.aten.convolution_backward(
        g, x, weight, [weight.shape[0]], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask
    )
    return gw, gb


def _will_run(nodes: tuple[Any, Any], needed: tuple[bool, bool]) -> bool:
    """Whether this backward pass will use the weight or bias gradient (``True`` when unsure)."""
    asked = [node for node, need in zip(nodes, needed, strict=True) if need]
    if not asked:
        return False
    if any(node is None for node in asked):  # a leaf, not viewed: its node cannot be asked
        return True
    try:
        return any(torch._C._will_engine_execute_node(node) for node in asked)
    except (AttributeError, RuntimeError):
        return True
