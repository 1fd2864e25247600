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


#: With ``grad_checkpoint=None`` (auto), a pass that needs an input gradient keeps at most this
#: many bytes of the network's activations for the backward pass; the pieces (batch chunks or
#: tiles) beyond it are checkpointed, i.e. their activations are recomputed in the backward pass.
#: Keeping is cheaper: a checkpointed attack step through ``paper`` costs about 1.5x a kept one.
#: upconv7 keeps about 125 MB per 224 x 224 image in float32 (the probe reads 139), so 1.5 GiB
#: holds a batch of 11.
GRAD_KEEP_BYTES = 3 << 29

#: Tile side (input pixels) used for a checkpointed gradient pass on an image whose own
#: activations exceed :data:`GRAD_KEEP_BYTES` when no ``tile_size`` was given, so that one piece's
#: activations, not the whole image's, are alive during the backward pass.
GRAD_TILE_SIZE = 256

#: Side of the (zero) image whose gradient pass measures a network's kept bytes per input pixel,
#: once per network, dtype, device type and probe size (smaller for smaller images, whose border
#: weighs more); the border makes the estimate a little high for larger ones (1.1x for upconv7
#: at 224).
_PROBE_SIDE = 64


class _Keep:
    """The input pixels that may still keep their activations in a checkpointed pass."""

    def __init__(self, pixels: int) -> None:
        self.left = pixels

    def take(self, x: Tensor) -> bool:
        """Whether piece ``x`` keeps its activations (and, if so, spend its pixels)."""
        px = x.shape[0] * x.shape[-2] * x.shape[-1]
        if px > self.left:
            return False
        self.left -= px
        return True


def _kept_bytes(net: nn.Module, x: Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for the backward pass of ``net(x)``."""
    seen: set[int] = set()
    total = 0

    def pack(t: Tensor) -> Tensor:
        nonlocal total
        storage = t.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x.requires_grad_(True))
    return total


def _run(net: nn.Module, x: Tensor, checkpoint: bool, keep: _Keep | None) -> Tensor:
    if checkpoint and not (keep is not None and keep.take(x)):
        return torch.utils.checkpoint.checkpoint(net, x, use_reentrant=False)
    return net(x)


def _forward_chunked(
    net: nn.Module, x: Tensor, checkpoint: bool = False, keep: _Keep | None = None
) -> Tensor:
    n, _, h, w = x.shape
    if x.device.type != "cpu" or n <= 1:
        return _run(net, x, checkpoint, keep)
    chunk = max(1, CPU_CHUNK_PIXELS // max(h * w, 1))
    if chunk >= n:
        return _run(net, x, checkpoint, keep)
    return torch.cat([_run(net, x[i : i + chunk], checkpoint, keep) for i in range(0, n, chunk)])


def tiled_forward(
    net: nn.Module,
    x: Tensor,
    scale: int,
    tile_size: int | None,
    overlap: int,
    *,
    checkpoint: bool = False,
    keep_pixels: int = 0,
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
        keep_pixels: with ``checkpoint``, the first pieces, up to this many input pixels in all,
            are not checkpointed (their activations are kept, so they are not recomputed).

    Returns:
        (N, C', scale*H, scale*W).
    """
    n, _, h, w = x.shape
    keep = _Keep(keep_pixels) if checkpoint and keep_pixels > 0 else None
    if tile_size is None or (h <= tile_size and w <= tile_size) or n == 0:
        return _forward_chunked(net, x, checkpoint, keep)
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
                out = _forward_chunked(net, x[:, :, a0:a1, b0:b1], checkpoint, keep)
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
            out = _forward_chunked(net, x[:, :, a0:a1, b0:b1], checkpoint, keep)
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
            them: ``True``, ``False``, or ``None`` (default: keep up to :data:`GRAD_KEEP_BYTES`
            of activations, measured once per network and dtype on a small zero image, and checkpoint
            only the pieces beyond it; an image whose own activations exceed it is cut into
            tiles of :data:`GRAD_TILE_SIZE` unless ``tile_size`` is set). The gradient is the
            same up to float rounding.
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
        self._bytes_per_pixel: dict[tuple[str, str, int, int], float] = {}  # see _kept_bytes_per_pixel

    def purify(self, x: Tensor) -> Tensor:
        """Upscale ``x`` (tiled if ``tile_size`` is set) in ``precision`` and clamp to [0, 1]."""
        needs_grad = torch.is_grad_enabled() and x.requires_grad
        dtype = resolve_precision(self.precision, x.device, needs_grad=needs_grad)
        tile, checkpoint, keep_pixels = self.tile_size, False, 0
        with autocast_for(dtype, x.device) if dtype != x.dtype else contextlib.nullcontext():
            if needs_grad:
                if self.grad_checkpoint is None:
                    n, _, h, w = x.shape
                    per_pixel = self._kept_bytes_per_pixel(x)
                    keep_pixels = int(GRAD_KEEP_BYTES // max(per_pixel, 1e-9))
                    checkpoint = n * h * w > keep_pixels
                    if checkpoint and tile is None and h * w > keep_pixels:
                        tile = GRAD_TILE_SIZE
                else:
                    checkpoint = self.grad_checkpoint
            y = tiled_forward(
                self.net,
                x,
                self.scale,
                tile,
                self.tile_overlap,
                checkpoint=checkpoint,
                keep_pixels=keep_pixels,
            )
        y = y.to(x.dtype)
        if (torch.is_grad_enabled() and y.requires_grad) or _shares_memory(x, y):
            return y.clamp(0, 1)
        return y.clamp_(0, 1)  # in place: the 2x output is the largest tensor of the pass

    def _kept_bytes_per_pixel(self, x: Tensor) -> float:
        """Bytes of activations a gradient pass keeps per input pixel, measured on a zero image.

        The image is :data:`_PROBE_SIDE` pixels square, or ``x``'s size where that is smaller;
        gradient passes of a batch of two and of one run under a saved-tensors hook that adds up
        the distinct storages autograd keeps, and the difference (the weights, kept once per
        pass, cancel) is one image's share. The figure is cached per dtype (the active
        autocast's), device type and probe size: the network does not change between calls.
        """
        dev = x.device.type
        dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype
        side_h, side_w = min(x.shape[-2], _PROBE_SIDE), min(x.shape[-1], _PROBE_SIDE)
        key = (str(dtype), dev, side_h, side_w)
        cache = self._bytes_per_pixel
        if key not in cache:

            def kept(n: int) -> int:
                return _kept_bytes(self.net, x.new_zeros((n, x.shape[1], side_h, side_w)))

            # in eval mode, so that the zero images leave no trace (batch-norm statistics)
            modes = [(m, m.training) for m in self.net.modules()]
            self.net.eval()
            try:
                # two images minus one: what is kept once per pass (the weights) cancels out
                cache[key] = max(kept(2) - kept(1), 0) / (side_h * side_w)
            finally:
                for m, mode in modes:
                    m.training = mode
        return cache[key]

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
