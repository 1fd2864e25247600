"""EDSR and EDSR-baseline (Lim et al., CVPRW 2017), with loaders for the public checkpoints.

The module's parameter names follow the original EDSR-PyTorch code
(github.com/sanghyun-son/EDSR-PyTorch, ``src/model/edsr.py`` and ``common.py``), so its
checkpoints (``edsr_baseline_x2-1bc95232.pt``, ...) load with ``strict=True``:

=======================  ==========================================================
``sub_mean.*``           1x1 conv: ``x - 255 * mean`` (DIV2K mean, frozen)
``head.0.*``             3x3 conv, 3 -> n_feats
``body.{i}.body.0/2.*``  residual block i: conv, ReLU, conv; ``x + res_scale * res``
``body.{n}.*``           3x3 conv after the blocks (global skip around the body)
``tail.0.{0,2,..}.*``    upsampler: 3x3 conv to 4 n_feats + PixelShuffle(2), per x2
                         step (or one conv to 9 n_feats + PixelShuffle(3) for x3)
``tail.1.*``             3x3 conv, n_feats -> 3
``add_mean.*``           1x1 conv: ``x + 255 * mean``
=======================  ==========================================================

BasicSR files (``basicsr/archs/edsr_arch.py``: ``conv_first``, ``body.{i}.conv1/conv2``,
``conv_after_body``, ``upsample.{0,2,..}``, ``conv_last``, wrapped in ``params`` or
``params_ema``) are renamed to this layout on load; their mean shift is the same constant.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn

from ..._weights import WeightsError, load_weights, mark_weights

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)

EDSR_PUBLIC_FILES = {
    "edsr_baseline_x2-1bc95232.pt": (16, 64, 2),
    "edsr_baseline_x3-abf2a44e.pt": (16, 64, 3),
    "edsr_baseline_x4-6b446fab.pt": (16, 64, 4),
    "edsr_x2-0edfb8a3.pt": (32, 256, 2),
    "edsr_x3-ea3ef2c6.pt": (32, 256, 3),
    "edsr_x4-4f62e9ef.pt": (32, 256, 4),
}
"""The EDSR-PyTorch release files: name -> (n_resblocks, n_feats, scale)."""

EDSR_URL = "https://cv.snu.ac.kr/research/EDSR/models/"

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,64})\.[^.]+$")


class MeanShift(nn.Conv2d):
    """Frozen 1x1 conv adding ``sign * rgb_range * mean`` (EDSR-PyTorch ``common.MeanShift``)."""

    def __init__(
        self, rgb_range: float, rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN, sign: int = -1
    ) -> None:
        super().__init__(3, 3, kernel_size=1)
        assert self.bias is not None  # a Conv2d with the default bias=True
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(rgb_mean))
        self.requires_grad_(False)


class ResBlock(nn.Module):
    """conv3x3 - ReLU - conv3x3, scaled by ``res_scale`` and added to the input."""

    def __init__(self, n_feats: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        """``x + res_scale * body(x)``."""
        res = self.body(x)
        if self.res_scale != 1:
            res = res * self.res_scale
        return x + res


def _upsampler(scale: int, n_feats: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0:
        for _ in range(int(math.log2(scale))):
            layers += [nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2)]
    elif scale == 3:
        layers += [nn.Conv2d(n_feats, 9 * n_feats, 3, padding=1), nn.PixelShuffle(3)]
    else:
        raise ValueError(f"EDSR scale: expected 2, 3, 4 (or another power of 2), got {scale}")
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """Enhanced Deep Residual Network for single-image super-resolution (Lim et al., 2017).

    EDSR-baseline is ``n_resblocks=16, n_feats=64, res_scale=1`` (the network of Mustafa et
    al.); EDSR is ``n_resblocks=32, n_feats=256, res_scale=0.1``. Scaling to 0..255 and the
    DIV2K mean shift happen inside, so the module takes and returns [0, 1] images.

    Args:
        n_resblocks: number of residual blocks.
        n_feats: feature channels.
        scale: upscaling factor (2, 3, 4 or another power of 2).
        res_scale: residual scaling inside each block.
        rgb_range: the value range the network was trained on (255 for the public weights).
        rgb_mean: the mean subtracted (times ``rgb_range``) inside the network.

    Shape:
        - Input: (N, 3, H, W) in [0, 1].
        - Output: (N, 3, scale*H, scale*W), not clamped.

    Example:
        >>> net = EDSR(n_resblocks=2, n_feats=8)
        >>> net(torch.rand(1, 3, 5, 7)).shape
        torch.Size([1, 3, 10, 14])
    """

    def __init__(
        self,
        n_resblocks: int = 16,
        n_feats: int = 64,
        scale: int = 2,
        res_scale: float = 1.0,
        rgb_range: float = 255.0,
        rgb_mean: tuple[float, float, float] = DIV2K_RGB_MEAN,
    ) -> None:
        super().__init__()
        self.n_resblocks = n_resblocks
        self.n_feats = n_feats
        self.scale = scale
        self.res_scale = res_scale
        self.rgb_range = rgb_range
        self.sub_mean = MeanShift(rgb_range, rgb_mean, sign=-1)
        self.add_mean = MeanShift(rgb_range, rgb_mean, sign=1)
        self.head = nn.Sequential(nn.Conv2d(3, n_feats, 3, padding=1))
        self.body = nn.Sequential(
            *[ResBlock(n_feats, res_scale) for _ in range(n_resblocks)],
            nn.Conv2d(n_feats, n_feats, 3, padding=1),
        )
        self.tail = nn.Sequential(_upsampler(scale, n_feats), nn.Conv2d(n_feats, 3, 3, padding=1))

    @property
    def halo(self) -> int:
        """Receptive-field halo in input pixels: one per 3x3 conv at input resolution, plus one."""
        # head + 2 per block + body conv + upsampler conv(s) at <= input resolution + last conv
        n_up = len([m for m in cast(nn.Sequential, self.tail[0]) if isinstance(m, nn.Conv2d)])
        return 1 + 2 * self.n_resblocks + 1 + n_up + 1

    def forward(self, x: Tensor) -> Tensor:
        """Super-resolve ``x``; see the class docstring."""
        x = self.sub_mean(x * self.rgb_range)
        x = self.head(x)
        x = x + self.body(x)
        x = self.add_mean(self.tail(x))
        return x / self.rgb_range

    def extra_repr(self) -> str:
        """Architecture hyper-parameters."""
        return (
            f"n_resblocks={self.n_resblocks}, n_feats={self.n_feats}, scale={self.scale}, "
            f"res_scale={self.res_scale}"
        )


# ----------------------------------------------------------------------------- loading


def _from_basicsr(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    n = len({k.split(".")[1] for k in sd if re.fullmatch(r"body\.\d+\.conv1\.weight", k)})
    for k, v in sd.items():
        if m := re.fullmatch(r"conv_first\.(weight|bias)", k):
            out[f"head.0.{m[1]}"] = v
        elif m := re.fullmatch(r"body\.(\d+)\.conv([12])\.(weight|bias)", k):
            out[f"body.{m[1]}.body.{2 * (int(m[2]) - 1)}.{m[3]}"] = v
        elif m := re.fullmatch(r"conv_after_body\.(weight|bias)", k):
            out[f"body.{n}.{m[1]}"] = v
        elif m := re.fullmatch(r"upsample\.(\d+)\.(weight|bias)", k):
            out[f"tail.0.{m[1]}.{m[2]}"] = v
        elif m := re.fullmatch(r"conv_last\.(weight|bias)", k):
            out[f"tail.1.{m[1]}"] = v
        else:
            out[k] = v  # unexpected: reported by the key check
    return out


def detect_edsr_format(sd: dict[str, Tensor]) -> str:
    """Return ``"edsr-pytorch"`` or ``"basicsr"`` from the keys, or ``"unknown"``."""
    if "head.0.weight" in sd and "tail.1.weight" in sd:
        return "edsr-pytorch"
    if "conv_first.weight" in sd and "conv_last.weight" in sd:
        return "basicsr"
    return "unknown"


def _infer_arch(sd: dict[str, Tensor]) -> tuple[int, int, int]:
    n_feats = sd["head.0.weight"].shape[0]
    n_resblocks = len([k for k in sd if re.fullmatch(r"body\.\d+\.body\.0\.weight", k)])
    up = sorted(
        (int(m[1]), v.shape[0]) for k, v in sd.items() if (m := re.fullmatch(r"tail\.0\.(\d+)\.weight", k))
    )
    if len(up) == 1 and up[0][1] == 9 * n_feats:
        scale = 3
    else:
        scale = 2 ** len(up)
    return n_resblocks, n_feats, scale


def sha256_from_name(path: str | Path) -> str | None:
    """The hash prefix in a torch.hub-style file name (``name-<hex>.pt``), or ``None``."""
    m = _HASH_IN_NAME.search(Path(path).name)
    return m[1] if m else None


def load_edsr(
    path: str | Path,
    *,
    scale: int | None = None,
    res_scale: float | None = None,
    sha256: str | None = None,
) -> EDSR:
    """Build an :class:`EDSR` from an EDSR-PyTorch or BasicSR checkpoint file.

    The file is checked against ``sha256`` when given, else against the hash prefix in its
    name (torch.hub convention: ``edsr_baseline_x2-1bc95232.pt`` must have a sha256 starting
    with ``1bc95232``); a file whose name has no such prefix is accepted after the key and
    shape check alone. Loading uses ``torch.load(weights_only=True)``.

    Args:
        path: the checkpoint.
        scale: expected scale; a file of another scale raises.
        res_scale: residual scaling; default 0.1 for 256-feature networks (EDSR), else 1.
        sha256: pinned digest or prefix (>= 8 hex digits), overriding the name's.

    Returns:
        The network in eval mode, on the CPU.

    Raises:
        WeightsError: wrong hash, unknown format, or missing/unexpected keys or shapes (the
            message names the file and the keys).

    Example:
        >>> net = load_edsr("edsr_baseline_x2-1bc95232.pt")  # doctest: +SKIP
    """
    pin = sha256 if sha256 is not None else sha256_from_name(path)
    sd, digest = load_weights(path, pin)
    net = edsr_from_state_dict(sd, source=path, scale=scale, res_scale=res_scale)
    mark_weights(net, path, digest, pin)
    return net


def edsr_from_state_dict(
    state_dict: dict[str, Tensor],
    *,
    source: str | Path = "<state dict>",
    scale: int | None = None,
    res_scale: float | None = None,
) -> EDSR:
    """Build an :class:`EDSR` from a state dict in EDSR-PyTorch or BasicSR layout.

    The layout is detected from the keys and ``n_resblocks``, ``n_feats`` and the scale are
    inferred from the tensor shapes. ``state_dict`` is not modified.

    Args:
        state_dict: the tensors (already unwrapped from ``params``/``params_ema``).
        source: the file name, used in error messages.
        scale: expected scale; another scale raises.
        res_scale: residual scaling; default 0.1 for 256-feature networks (EDSR), else 1.

    Returns:
        The network in eval mode, on the CPU.

    Raises:
        WeightsError: unknown format, wrong scale, missing/unexpected keys or wrong shapes.
    """
    sd = dict(state_dict)
    fmt = detect_edsr_format(sd)
    if fmt == "unknown":
        sample = ", ".join(sorted(sd)[:6])
        raise WeightsError(
            f"{source} is neither an EDSR-PyTorch checkpoint (head.0.*, body.*, tail.*) nor a "
            f"BasicSR EDSR file (conv_first.*, body.*.conv1.*, conv_last.*); it has keys {sample}, ..."
        )
    if fmt == "basicsr":
        sd = _from_basicsr(sd)
    n_resblocks, n_feats, file_scale = _infer_arch(sd)
    if scale is not None and scale != file_scale:
        raise WeightsError(f"{source} is an x{file_scale} EDSR, but scale={scale} was asked for")
    if res_scale is None:
        res_scale = 0.1 if n_feats >= 256 else 1.0
    try:
        model = EDSR(n_resblocks, n_feats, file_scale, res_scale)
    except ValueError as exc:
        raise WeightsError(f"{source}: {exc}") from exc
    own = model.state_dict()
    if fmt == "basicsr":  # BasicSR keeps the (same) mean shift out of the state dict
        for k in ("sub_mean.weight", "sub_mean.bias", "add_mean.weight", "add_mean.bias"):
            sd.setdefault(k, own[k])
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shape = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or bad_shape:
        raise WeightsError(
            f"{source} ({fmt} layout, inferred n_resblocks={n_resblocks}, n_feats={n_feats}, "
            f"x{file_scale}) does not match EDSR: missing keys {missing[:8]}, unexpected keys "
            f"{unexpected[:8]}, wrong shapes {bad_shape[:8]}"
        )
    model.load_state_dict({k: v.to(torch.float32) for k, v in sd.items()})
    return model.eval()
