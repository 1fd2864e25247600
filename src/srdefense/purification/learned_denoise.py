"""The denoising stage: wavelet denoising (the paper) or a learned denoiser, and their registry.

Mustafa et al. (IEEE TIP 2020) denoise with wavelet shrinkage before super-resolution. A
learned denoiser can replace that step or follow it: DnCNN (Zhang et al., TIP 2017),
DRUNet (Zhang et al., TPAMI 2021), SCUNet (Zhang et al., 2022) or FBCNN (Jiang et al., ICCV
2021, JPEG artefacts), loaded from a community checkpoint by spandrel
(:mod:`srdefense.purification.sr_models.spandrel_backend`, optional dependency).

``paper_defense(denoiser="spandrel", denoiser_weights=FILE)`` replaces the wavelet step,
``denoiser="wavelet+spandrel"`` runs the learned denoiser after it, ``denoiser="none"`` drops
the denoising stage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from .._registry import Registry
from .base import Purifier
from .sr_models.spandrel_backend import load_spandrel
from .superres import tiled_forward
from .wavelet import WaveletDenoise


class LearnedDenoise(Purifier):
    """A learned denoiser (scale 1) as a purifier; differentiable end to end.

    Args:
        weights: checkpoint of a restoration network spandrel detects (DnCNN, DRUNet, SCUNet,
            FBCNN, NAFNet, ...), ``.safetensors`` or ``.pth`` (loaded safely).
        sha256: pinned digest (or prefix of >= 8 hex digits) of the file; ``None`` skips the
            check (the digest is recorded in ``net.sha256``).
        noise_level: the noise-map value of DRUNet / FDnCNN, in [0, 1] units (default 15/255).
        tile_size: process the image in tiles of this many pixels (bounded memory); ``None``
            processes it whole.
        tile_overlap: context around each tile; default the network's halo (exact for the
            convolutional DnCNN, approximate for U-Nets and transformers: ``net.exact_tiling``).

    Shape:
        - Input: (N, 3, H, W) in [0, 1].
        - Output: (N, 3, H, W) in [0, 1].
    """

    differentiable = True
    scale = 1

    def __init__(
        self,
        weights: str | Path,
        *,
        sha256: str | None = None,
        noise_level: float = 15 / 255,
        tile_size: int | None = None,
        tile_overlap: int | None = None,
    ) -> None:
        super().__init__()
        self.net = load_spandrel(weights, sha256=sha256, purpose="restoration", noise_level=noise_level)
        if tile_size is not None and tile_size < 1:
            raise ValueError(f"tile_size must be >= 1 or None, got {tile_size}")
        if tile_overlap is not None and tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0 or None, got {tile_overlap}")
        self.tile_size = tile_size
        self.tile_overlap = self.net.halo if tile_overlap is None else tile_overlap
        self.reference = f"learned denoiser ({self.net.arch}, through spandrel)"

    def purify(self, x: Tensor) -> Tensor:
        """Denoise ``x`` (tiled if ``tile_size`` is set) and clamp to [0, 1]."""
        return tiled_forward(self.net, x, 1, self.tile_size, self.tile_overlap).clamp(0, 1)

    def extra_name(self) -> str:
        """``denoise-<architecture>``."""
        return f"denoise-{self.net.arch}"

    def extra_repr(self) -> str:
        """Architecture, file and tiling."""
        return (
            f"arch={self.net.arch!r}, weights={self.net.source!r}, sha256={self.net.sha256[:12]!r}, "
            f"tile_size={self.tile_size}, tile_overlap={self.tile_overlap}"
        )


@dataclass(frozen=True)
class DenoiserInfo:
    """Metadata of a denoising stage.

    Attributes:
        name: registry name (``--denoiser NAME``).
        description: one line for listings.
        license: licence of the method / weights.
        reference: the method's paper.
        options: parameters, for listings.
        needs_weights: whether ``weights=PATH`` (``--denoiser-weights``) must be given.
        factory: ``factory(weights=None, **kw) -> Purifier``.
    """

    name: str
    description: str
    license: str
    reference: str
    options: str
    needs_weights: bool
    factory: Callable[..., Purifier]

    @property
    def capabilities(self) -> dict[str, Any]:
        """Options and whether a weight file must be given."""
        return {"options": self.options, "needs_weights": self.needs_weights}


DENOISERS: Registry[DenoiserInfo] = Registry("denoiser")


def _make_wavelet(*, weights: str | Path | None = None, **kw: Any) -> Purifier:
    if weights is not None:
        raise ValueError("denoiser 'wavelet' has no weights (--denoiser-weights is for 'spandrel')")
    opts = {"sigma": 0.01, "convert2ycbcr": True, "legacy_sigma": True, **kw}
    return WaveletDenoise(**opts)


def _make_spandrel(*, weights: str | Path | None = None, **kw: Any) -> Purifier:
    if weights is None:
        raise ValueError(
            "denoiser 'spandrel' needs weights=PATH (--denoiser-weights FILE): a DnCNN, DRUNet, SCUNet "
            "or FBCNN checkpoint (.pth or .safetensors)"
        )
    return LearnedDenoise(weights, **kw)


DENOISERS.add(
    "wavelet",
    DenoiserInfo(
        name="wavelet",
        description="wavelet denoising, BayesShrink, soft, YCbCr, db1, sigma 0.01 (the paper's)",
        license="n/a (PyWavelets: MIT)",
        reference="Mustafa et al., IEEE TIP 2020; Chang, Yu, Vetterli, IEEE TIP 2000 (BayesShrink)",
        options="sigma, wavelet, method, mode, convert2ycbcr, legacy_sigma",
        needs_weights=False,
        factory=_make_wavelet,
    ),
)
DENOISERS.add(
    "spandrel",
    DenoiserInfo(
        name="spandrel",
        description="learned denoiser from a checkpoint spandrel detects (DnCNN, DRUNet, SCUNet, FBCNN)",
        license="spandrel: MIT; weights: the checkpoint's own licence (not shipped)",
        reference="Zhang et al. TIP 2017 (DnCNN), TPAMI 2021 (DRUNet), 2022 (SCUNet); Jiang et al. 2021",
        options="weights=FILE, sha256, noise_level (DRUNet/FDnCNN, default 15/255), tile_size",
        needs_weights=True,
        factory=_make_spandrel,
    ),
)

DENOISER_MODES = ("wavelet", "spandrel", "wavelet+spandrel", "none")
"""Values of ``paper_defense(denoiser=...)``: which denoising stages run before SR, in order."""


def list_denoisers() -> list[DenoiserInfo]:
    """The registered denoising stages, sorted by name."""
    return [DENOISERS.get(n) for n in DENOISERS.names()]


def create_denoiser(name: str, *, weights: str | Path | None = None, **kw: Any) -> Purifier:
    """Create a denoising stage by name (``"wavelet"`` or ``"spandrel"``).

    Raises:
        KeyError: unknown name (lists the known ones).
        ValueError: missing or unexpected weights.
    """
    return DENOISERS.get(name).factory(weights=weights, **kw)


def denoising_stages(
    denoiser: str, weights: str | Path | None, wavelet: Callable[[], Purifier]
) -> list[Purifier]:
    """The denoising stages of the pipeline for ``denoiser`` (one of :data:`DENOISER_MODES`).

    Args:
        denoiser: ``"wavelet"``, ``"spandrel"``, ``"wavelet+spandrel"`` or ``"none"``.
        weights: checkpoint of the learned denoiser (required when it runs).
        wavelet: builds the wavelet stage with the pipeline's settings.

    Raises:
        ValueError: unknown mode, or weights given where no learned denoiser runs.
    """
    if denoiser not in DENOISER_MODES:
        raise ValueError(f"denoiser: expected one of {', '.join(DENOISER_MODES)}, got {denoiser!r}")
    stages: list[Purifier] = []
    if denoiser in ("wavelet", "wavelet+spandrel"):
        stages.append(wavelet())
    if denoiser in ("spandrel", "wavelet+spandrel"):
        stages.append(create_denoiser("spandrel", weights=weights))
    elif weights is not None:
        raise ValueError(f"denoiser_weights given but denoiser={denoiser!r} runs no learned denoiser")
    return stages
