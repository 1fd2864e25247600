"""The inference form of EfficientNet-Lite: batch norm folded into the convolutions.

In eval mode every batch norm of EfficientNet-Lite is a fixed per-channel affine map, so it
folds into the convolution before it (``w * s``, ``beta - mean * s`` with
``s = gamma / sqrt(var + eps)``), and TensorFlow's "same" padding of a stride-1 convolution with
an odd kernel is symmetric, so it is the convolution's own zero padding instead of an
``F.pad`` copy. Without autograd on the CPU, each convolution and its ReLU6 are then one oneDNN
call (ReLU6 as a ``hardtanh`` post-op). With autograd the folded weights are computed in the
graph (so gradients reach the original parameters, if they require one) and the layers run as
``F.conv2d`` + ``F.hardtanh``.

Profiled on a 2-core AMD EPYC (Zen 3, 10 images at 448 x 448, eval, no autograd), the package's
forward spent 43% of its time in the convolutions, 17% in batch norm, 17% in ReLU6 and 17% in
the padding copies; all but the convolutions and four stride-2 paddings go away here.

Written here because no library folds a model it does not own the code of without tracing it
(``torch.fx`` cannot trace the dynamic padding of this network). The result equals the
package's forward to float rounding (tested, float64 to 1e-10).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._onednn import HAS_FUSED_CONV, cpu_autocast_dtype, onednn_enabled


@dataclass(frozen=True)
class _Layer:
    conv: nn.Conv2d
    bn: nn.BatchNorm2d
    act: bool  # ReLU6 after it


def _layers(net: Any) -> Iterator[_Layer | str]:
    """The network's conv + bn layers in order; the strings ``"block"``/``"skip"`` mark blocks."""
    yield _Layer(net._conv_stem, net._bn0, True)
    for b in net._blocks:
        yield "block"
        args = b._block_args
        if args.expand_ratio != 1:
            yield _Layer(b._expand_conv, b._bn0, True)
        yield _Layer(b._depthwise_conv, b._bn1, True)
        yield _Layer(b._project_conv, b._bn2, False)
        stride = args.stride if isinstance(args.stride, int) else args.stride[0]
        if b.id_skip and stride == 1 and args.input_filters == args.output_filters:
            yield "skip"
    yield _Layer(net._conv_head, net._bn1, True)


def supports(net: Any) -> bool:
    """Whether ``net`` (an ``efficientnet_lite_pytorch.EfficientNet``) has the form folded here."""
    gp = getattr(net, "_global_params", None)
    blocks = getattr(net, "_blocks", None)
    if gp is None or blocks is None or gp.relu_fn != "relu6" or gp.local_pooling:
        return False
    return not any(b.has_se for b in blocks)


def _fold(layer: _Layer) -> tuple[Tensor, Tensor]:
    conv, bn = layer.conv, layer.bn
    assert bn.running_var is not None and bn.running_mean is not None
    s = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    w = conv.weight * s.view(-1, 1, 1, 1)
    b = bn.bias - bn.running_mean * s
    if conv.bias is not None:
        b = b + conv.bias * s
    return w, b


class FoldedLite:
    """Folded weights of one EfficientNet-Lite, cached until a parameter or buffer changes."""

    def __init__(self, net: Any) -> None:
        self.items = list(_layers(net))
        self.layers = [it for it in self.items if isinstance(it, _Layer)]
        self.tensors: list[Tensor] = [*net.parameters(), *net.buffers()]
        self._key: tuple[object, ...] | None = None
        self._cached: list[tuple[Tensor, Tensor]] = []

    def _version(self) -> tuple[object, ...]:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in self.tensors)

    def weights(self, channels_last: bool, differentiable: bool) -> list[tuple[Tensor, Tensor]]:
        """(weight, bias) per layer; in the autograd graph when ``differentiable``."""
        if differentiable:
            return [_fold(layer) for layer in self.layers]
        key = (channels_last, self._version())
        if key != self._key:
            with torch.no_grad():
                fmt = torch.channels_last if channels_last else torch.contiguous_format
                self._cached = [(w.contiguous(memory_format=fmt), b) for w, b in map(_fold, self.layers)]
            self._key = key
        return self._cached


def _fused_ok(x: Tensor, needs_graph: bool) -> bool:
    if needs_graph or x.device.type != "cpu" or x.dtype != torch.float32 or x.layout != torch.strided:
        return False
    return HAS_FUSED_CONV and onednn_enabled() and cpu_autocast_dtype() is None


def _conv(x: Tensor, w: Tensor, b: Tensor, conv: nn.Conv2d, act: bool, fused: bool) -> Tensor:
    """One convolution with TensorFlow "same" padding (as the package computes it), + ReLU6."""
    ih, iw = x.shape[-2:]
    kh, kw = w.shape[-2:]
    sh, sw = conv.stride
    dh, dw = conv.dilation
    pad_h = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
    pad_w = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
    if pad_h % 2 == 0 and pad_w % 2 == 0:
        padding = [pad_h // 2, pad_w // 2]
    else:  # asymmetric (stride 2): one more row/column at the bottom/right, as TensorFlow does
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        padding = [0, 0]
    if fused:
        attr, scalars = ("hardtanh", [0.0, 6.0]) if act else ("none", [])
        op = torch.ops.mkldnn._convolution_pointwise
        return op(x, w, b, padding, [sh, sw], [dh, dw], conv.groups, attr, scalars, "")
    y = F.conv2d(x, w, b, (sh, sw), padding, (dh, dw), conv.groups)
    return F.hardtanh(y, 0.0, 6.0) if act else y


def folded_forward(net: Any, folded: FoldedLite, inputs: Tensor) -> Tensor:
    """The eval-mode forward of ``net`` with its folded weights: logits of normalised ``inputs``."""
    grad = torch.is_grad_enabled()
    weights_grad = grad and any(t.requires_grad for t in folded.tensors)
    needs_graph = grad and (inputs.requires_grad or weights_grad)
    fused = _fused_ok(inputs, needs_graph)
    channels_last = inputs.is_contiguous(memory_format=torch.channels_last) and inputs.dim() == 4
    params = iter(folded.weights(channels_last and fused, differentiable=weights_grad))
    x = inputs
    block_in = x
    for item in folded.items:
        if item == "block":
            block_in = x
        elif item == "skip":
            x = x + block_in
        else:
            assert isinstance(item, _Layer)
            w, b = next(params)
            x = _conv(x, w, b, item.conv, item.act, fused)
    x = net._avg_pooling(x).flatten(1)
    return net._fc(net._dropout(x))
