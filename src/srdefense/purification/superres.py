"""Super-resolution as a purifier (Mustafa et al., IEEE TIP 2020), and its backend registry.

The defense upscales the (denoised) image by 2 with a deep SR network, which maps off-manifold
perturbations back towards natural images. The backends (``upconv7``, ``edsr``, ``spandrel``,
``bicubic``, ``nearest``) and their registry live in :mod:`.sr_backends`; their names are
importable from here as well.

Every backend takes and returns [0, 1] RGB NCHW images and has a receptive-field *halo*
(input pixels on each side that influence an output pixel), which is the default overlap of
the tiled forward: tiled and untiled outputs agree to float rounding.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from .._validation import check_image_batch
from .base import Purifier
from .precision import PrecisionStage, autocast_for, check_precision, resolve_precision
from .sr_backends import (  # noqa: F401  (re-exported: the backend registry's public names)
    MUSTAFA_REFERENCE,
    SR_MODELS,
    UPCONV7_WEIGHTS,
    WEIGHTS_DIR,
    Interpolate,
    SRModelInfo,
    create_sr_model,
    fold_sr_options,
    get_sr_model_info,
    list_sr_models,
    split_sr_spec,
)
from .weight_cache import _read_cached, cached_state_dict, cached_weights  # noqa: F401  (re-exported)

# ----------------------------------------------------------------------------- tiling


def _spans(size: int, tile: int) -> list[tuple[int, int]]:
    return [(a, min(a + tile, size)) for a in range(0, size, tile)]


#: On the CPU, at most this many input pixels go through the network at once (batch x tile),
#: so peak memory stays bounded whatever the batch size: a 224 x 224 image's widest activation
#: (256 channels) is ~50 MB, a batch of 16 as one piece would need ~0.8 GB per activation.
#: Throughput is the same either way (measured on 10 images at 224). GPUs take the whole batch.
CPU_CHUNK_PIXELS = 1 << 16


#: With ``grad_checkpoint=None`` (auto), a pass that needs an input gradient is checkpointed
#: piece by piece once the batch holds more input pixels than this (about 5 images of 224 x 224):
#: below it, keeping the activations is cheaper than recomputing them.
GRAD_CHECKPOINT_PIXELS = 1 << 18

#: Tile side (input pixels) used for a checkpointed gradient pass on an image larger than
#: :data:`GRAD_CHECKPOINT_PIXELS` when no ``tile_size`` was given, so that one piece's
#: activations, not the whole image's, are alive during the backward pass.
GRAD_TILE_SIZE = 256


def _run(net: nn.Module, x: Tensor, checkpoint: bool) -> Tensor:
    if checkpoint:
        return torch.utils.checkpoint.checkpoint(net, x, use_reentrant=False)
    return net(x)


def _forward_chunked(net: nn.Module, x: Tensor, checkpoint: bool = False) -> Tensor:
    n, _, h, w = x.shape
    if x.device.type != "cpu" or n <= 1:
        return _run(net, x, checkpoint)
    chunk = max(1, CPU_CHUNK_PIXELS // max(h * w, 1))
    if chunk >= n:
        return _run(net, x, checkpoint)
    return torch.cat([_run(net, x[i : i + chunk], checkpoint) for i in range(0, n, chunk)])


def tiled_forward(
    net: nn.Module,
    x: Tensor,
    scale: int,
    tile_size: int | None,
    overlap: int,
    *,
    checkpoint: bool = False,
) -> Tensor:
    """Apply ``net`` (an x``scale`` SR network) to ``x`` in overlapping tiles.

    Each tile of ``tile_size`` input pixels is processed with ``overlap`` extra input pixels of
    context on every side (clipped at the image border, where the network's own padding then
    sees the real border) and only its centre is kept. When ``overlap`` covers the network's
    receptive-field halo the result equals the untiled forward up to float rounding. On the CPU
    the batch goes through in chunks of at most :data:`CPU_CHUNK_PIXELS` input pixels.

    Args:
        net: module mapping (N, C, h, w) to (N, C', scale*h, scale*w).
        x: input batch (N, C, H, W).
        scale: the network's upscaling factor.
        tile_size: tile side in input pixels; ``None`` or a size covering the image: no tiling.
        overlap: context pixels on each side of a tile.
        checkpoint: run each piece (tile or batch chunk) under
            ``torch.utils.checkpoint``, so that a backward pass keeps only the pieces' inputs
            and recomputes one piece's activations at a time: memory is bounded by the piece
            size instead of the batch and image size, for one more forward pass of compute.

    Returns:
        (N, C', scale*H, scale*W).
    """
    n, _, h, w = x.shape
    if tile_size is None or (h <= tile_size and w <= tile_size) or n == 0:
        return _forward_chunked(net, x, checkpoint)
    if tile_size < 1 or overlap < 0:
        raise ValueError(f"tile_size must be >= 1 and overlap >= 0, got {tile_size}, {overlap}")
    s = scale
    if not torch.is_grad_enabled():
        # inference: tiles go straight into the output (no per-row copies, no final cat, which
        # would hold the 2x image twice)
        out_full: Tensor | None = None
        for y0, y1 in _spans(h, tile_size):
            a0, a1 = max(y0 - overlap, 0), min(y1 + overlap, h)
            for x0, x1 in _spans(w, tile_size):
                b0, b1 = max(x0 - overlap, 0), min(x1 + overlap, w)
                out = _forward_chunked(net, x[:, :, a0:a1, b0:b1], checkpoint)
                if out_full is None:
                    out_full = out.new_empty(n, out.shape[1], s * h, s * w)
                out_full[:, :, s * y0 : s * y1, s * x0 : s * x1] = out[
                    :, :, s * (y0 - a0) : s * (y1 - a0), s * (x0 - b0) : s * (x1 - b0)
                ]
        assert out_full is not None
        return out_full
    rows = []
    for y0, y1 in _spans(h, tile_size):
        a0, a1 = max(y0 - overlap, 0), min(y1 + overlap, h)
        row = []
        for x0, x1 in _spans(w, tile_size):
            b0, b1 = max(x0 - overlap, 0), min(x1 + overlap, w)
            out = _forward_chunked(net, x[:, :, a0:a1, b0:b1], checkpoint)
            row.append(out[:, :, s * (y0 - a0) : s * (y1 - a0), s * (x0 - b0) : s * (x1 - b0)])
        rows.append(torch.cat(row, dim=3))
    return torch.cat(rows, dim=2)


# ----------------------------------------------------------------------------- purifier


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


class SuperResolve(Purifier, PrecisionStage):
    """Super-resolution purifier: upscale by the backend's factor and clamp to [0, 1].

    The defense stage of Mustafa et al. (IEEE TIP 2020). It is differentiable end to end, so
    white-box attacks take the true gradient through it.

    Args:
        model: backend name (``upconv7``, ``edsr``, ``bicubic``, ``nearest``) or an ``nn.Module`` SR network
            (then ``scale`` must be its factor and ``tile_overlap`` should cover its halo).
        weights: weight file (required for ``edsr``).
        scale: upscaling factor.
        tile_size: process the image in tiles of this many input pixels (bounded memory);
            ``None`` processes it whole.
        tile_overlap: context pixels around each tile; default the backend's receptive-field
            halo, which makes the tiled output equal the untiled one.
        precision: ``"fp32"`` (default), ``"bf16"``, ``"fp16"`` or ``"auto"`` (bf16 where the
            hardware has it, and only for passes that need no input gradient); see
            :mod:`srdefense.purification.precision`. Input and output stay float32.
        grad_checkpoint: for passes that need an input gradient, recompute the network's
            activations piece by piece in the backward pass (bounded memory) instead of keeping
            them: ``True``, ``False``, or ``None`` (default: only when the batch holds more than
            :data:`GRAD_CHECKPOINT_PIXELS` input pixels; images above that size are then cut into
            tiles of :data:`GRAD_TILE_SIZE` unless ``tile_size`` is set). The gradient is the same
            up to float rounding.
        **kw: backend options, see :func:`create_sr_model`.

    Shape:
        - Input: (N, 3, H, W) in [0, 1].
        - Output: (N, 3, scale*H, scale*W) in [0, 1].

    Example:
        >>> sr = SuperResolve("upconv7", tile_size=128)
        >>> sr(torch.rand(2, 3, 30, 41)).shape
        torch.Size([2, 3, 60, 82])
    """

    differentiable = True
    scale = 2
    reference = MUSTAFA_REFERENCE

    def __init__(
        self,
        model: str | nn.Module = "upconv7",
        *,
        weights: str | Path | None = None,
        scale: int = 2,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
        precision: str = "fp32",
        grad_checkpoint: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__()
        self.precision = check_precision(precision)
        self.grad_checkpoint = grad_checkpoint
        if isinstance(model, nn.Module):
            self.model_name = type(model).__name__
            self.net = model
            halo = int(getattr(model, "halo", 0))
            self.reference = f"{MUSTAFA_REFERENCE}; network: {self.model_name}"
        else:
            info = SR_MODELS.get(split_sr_spec(model)[0])
            self.model_name = model
            self.net = create_sr_model(model, weights=weights, scale=scale, **kw)
            halo = int(getattr(self.net, "halo", info.halo))
            self.reference = f"{MUSTAFA_REFERENCE}; network: {info.reference}"
        self.scale = int(getattr(self.net, "scale", scale))
        if tile_size is not None and tile_size < 1:
            raise ValueError(f"tile_size must be >= 1 or None, got {tile_size}")
        if tile_overlap is not None and tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0 or None, got {tile_overlap}")
        self.tile_size = tile_size
        self.tile_overlap = halo if tile_overlap is None else tile_overlap
        self.halo = halo

    def purify(self, x: Tensor) -> Tensor:
        """Upscale ``x`` (tiled if ``tile_size`` is set) in ``precision`` and clamp to [0, 1]."""
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        dtype = resolve_precision(self.precision, x.device, needs_grad=needs_grad)
        tile, checkpoint = self.tile_size, False
        if needs_grad:
            n, _, h, w = x.shape
            if self.grad_checkpoint is None:
                checkpoint = n * h * w > GRAD_CHECKPOINT_PIXELS
                if checkpoint and tile is None and h * w > GRAD_CHECKPOINT_PIXELS:
                    tile = GRAD_TILE_SIZE
            else:
                checkpoint = self.grad_checkpoint
        with autocast_for(dtype, x.device) if dtype != x.dtype else contextlib.nullcontext():
            y = tiled_forward(self.net, x, self.scale, tile, self.tile_overlap, checkpoint=checkpoint)
        y = y.to(x.dtype)
        if (torch.is_grad_enabled() and y.requires_grad) or _shares_memory(x, y):
            return y.clamp(0, 1)
        return y.clamp_(0, 1)  # in place: the 2x output is the largest tensor of the pass

    def extra_name(self) -> str:
        """``sr-<backend>``."""
        return f"sr-{self.model_name}"

    def extra_repr(self) -> str:
        """Backend, scale and tiling."""
        return (
            f"{self.model_name!r}, scale={self.scale}, tile_size={self.tile_size}, "
            f"tile_overlap={self.tile_overlap}, precision={self.precision!r}"
        )


def super_resolve(
    x: Tensor,
    model: str = "upconv7",
    *,
    weights: str | Path | None = None,
    scale: int = 2,
    tile_size: int | None = None,
    tile_overlap: int | None = None,
    **kw: Any,
) -> Tensor:
    """Functional form of :class:`SuperResolve`: ``super_resolve(x, m) == SuperResolve(m)(x)``.

    The network is built on ``x``'s device and dtype; its weights are read from disk once per
    process.

    Args:
        x: images (N, 3, H, W) in [0, 1].
        model: backend name (``upconv7``, ``edsr``, ``bicubic``, ``nearest``).
        weights: weight file (required for ``edsr``).
        scale: upscaling factor.
        tile_size: tile side in input pixels, or ``None``.
        tile_overlap: context around each tile (default: the backend's halo).
        **kw: backend options, see :func:`create_sr_model`.

    Returns:
        (N, 3, scale*H, scale*W) in [0, 1].

    Example:
        >>> super_resolve(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
    """
    check_image_batch(x, "images")
    sr = SuperResolve(
        model, weights=weights, scale=scale, tile_size=tile_size, tile_overlap=tile_overlap, **kw
    )
    return sr.to(device=x.device, dtype=x.dtype)(x)
