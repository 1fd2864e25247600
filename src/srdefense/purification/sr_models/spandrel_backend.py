"""Community restoration checkpoints through spandrel (optional dependency).

`spandrel <https://github.com/chaiNNer-org/spandrel>`_ (MIT) detects the architecture and the
hyper-parameters of a super-resolution or restoration network from its state dict: ESRGAN /
Real-ESRGAN, SwinIR, HAT, RCAN, OmniSR, SPAN, Real-CUGAN, Compact (SRVGGNet) for
super-resolution; DnCNN, DRUNet, SCUNet, FBCNN, NAFNet and more for restoration. This module
is a thin layer over it that keeps this project's rules:

* **Safe loading.** The file is read by :func:`srdefense._weights.load_state_dict`
  (safetensors, or ``torch.load(weights_only=True)``) and optionally checked against a pinned
  sha256; spandrel only sees the tensors (its own loader uses a restricted unpickler, not
  ``weights_only``, and is not used).
* **Gradients.** spandrel's ``ImageModelDescriptor.__call__`` runs under
  ``torch.inference_mode()`` and clamps in place, so it has no gradient. :class:`SpandrelNet`
  calls the underlying ``nn.Module`` directly (with the architecture's calling convention:
  the noise-level map of DRUNet / FDnCNN, the first output of FBCNN), pads to the
  architecture's size requirements with differentiable padding and crops back. The result is
  differentiable end to end, as the networks are.
* **Scale and input range** come from spandrel's descriptor: ``scale``, input / output
  channels and size requirements; spandrel's contract is images in [0, 1] in and out, the
  range of this project. Grayscale (1-channel) networks are applied to each RGB channel.
* **torchvision.** spandrel declares torchvision as a dependency (which would pull a CUDA
  torch), and ``import spandrel`` imports every architecture. Only two of them import
  torchvision: ``LaMa`` (inpainting; ``torchvision.transforms.functional.rotate``) and
  ``RestoreFormer`` (face restoration; ``normalize``). Neither is an SR or denoising network of
  this project. Where torchvision is not installed, :func:`import_spandrel` imports spandrel
  with a placeholder ``torchvision`` module that is removed from ``sys.modules`` right after,
  and the two architectures are left out of the detection registry (a checkpoint of either
  is refused with that reason).

Tiling: for purely convolutional architectures (:data:`LOCAL_ARCHITECTURES`, without
downsampling inside) the receptive-field halo is bounded by the sum of the convolution radii,
so tiles with that overlap give the untiled output. Architectures with attention, global
pooling or internal downsampling (SwinIR, HAT, SCUNet, DRUNet, FBCNN, ...) have no finite
halo: tiled outputs differ from the untiled ones near tile borders (``exact_tiling=False``).

Written by hand: only the calling conventions and the padding; the networks, detection and
hyper-parameters are spandrel's.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._weights import WeightsError, sha256_file
from ..weight_cache import cached_state_dict

SPANDREL_INSTALL = 'pip install --no-deps "spandrel==0.4.2" einops   (or: pip install -e ".[spandrel]")'
"""How to install the optional dependency without torchvision (and a CUDA torch)."""

TORCHVISION_ARCHITECTURES: dict[str, str] = {
    "LaMa": "inpainting network; imports torchvision.transforms.functional.rotate",
    "RestoreFormer": "face restoration network; imports torchvision.transforms.functional.normalize",
}
"""spandrel architectures that need torchvision, left out where it is not installed."""

LOCAL_ARCHITECTURES = frozenset({"DnCNN", "ESRGAN", "Compact"})
"""Purely convolutional architectures: finite halo, exact tiling (when no size multiple is needed)."""

NOISE_MAP_ARCHITECTURES = frozenset({"DRUNet", "DnCNN"})
"""Architectures that may take a noise-level map as an extra input channel (DRUNet, FDnCNN)."""

Purpose = Literal["sr", "restoration"]


class SpandrelUnavailableError(ImportError):
    """spandrel is not installed; the message says how to install it without torchvision."""


class _Unavailable:
    """Stands for a torchvision name during the import; using it raises a clear error."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> _Unavailable:
        return _Unavailable(f"{self._name}.{attr}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ModuleNotFoundError(f"{self._name} needs torchvision, which is not installed")


def _missing_attribute(module_name: str) -> Callable[[str], _Unavailable]:
    """The ``__getattr__`` of a placeholder module: every attribute is an :class:`_Unavailable`."""

    def getattr_(attr: str) -> _Unavailable:
        return _Unavailable(f"{module_name}.{attr}")

    return getattr_


def _placeholder_modules() -> dict[str, types.ModuleType]:
    mods = {}
    for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional"):
        m = types.ModuleType(name)
        # a module-level __getattr__ (PEP 562); typeshed declares ModuleType.__getattr__ as a method
        m.__getattr__ = _missing_attribute(name)  # type: ignore[method-assign]
        mods[name] = m
    mods["torchvision"].transforms = mods["torchvision.transforms"]  # type: ignore[attr-defined]
    mods["torchvision.transforms"].functional = mods["torchvision.transforms.functional"]  # type: ignore[attr-defined]
    return mods


def torchvision_available() -> bool:
    """Whether a real torchvision is importable."""
    mod = sys.modules.get("torchvision")
    if mod is not None:
        return getattr(mod, "__file__", None) is not None
    return importlib.util.find_spec("torchvision") is not None


def import_spandrel() -> Any:
    """Import spandrel, without torchvision if it is not installed (see the module docstring).

    Returns:
        The ``spandrel`` module.

    Raises:
        SpandrelUnavailableError: spandrel (or einops) is not installed.
    """
    if "spandrel" in sys.modules and hasattr(sys.modules["spandrel"], "MAIN_REGISTRY"):
        return sys.modules["spandrel"]
    if importlib.util.find_spec("spandrel") is None:
        raise SpandrelUnavailableError(f"the 'spandrel' backend needs spandrel: {SPANDREL_INSTALL}")
    stubs: dict[str, types.ModuleType] = {}
    if not torchvision_available():
        stubs = _placeholder_modules()
        sys.modules.update(stubs)
    try:
        import spandrel
    except ModuleNotFoundError as exc:
        raise SpandrelUnavailableError(f"spandrel cannot be imported ({exc}): {SPANDREL_INSTALL}") from exc
    finally:
        for name, mod in stubs.items():  # never leave the placeholder for other code to find
            if sys.modules.get(name) is mod:
                del sys.modules[name]
    return spandrel


def spandrel_registry() -> Any:
    """Spandrel's architecture registry, without :data:`TORCHVISION_ARCHITECTURES` if needed."""
    spandrel = import_spandrel()
    if torchvision_available():
        return spandrel.MAIN_REGISTRY
    reg = spandrel.ArchRegistry()
    reg.add(*(a for a in spandrel.MAIN_REGISTRY if str(a.architecture.id) not in TORCHVISION_ARCHITECTURES))
    return reg


def supported_architectures() -> list[str]:
    """Ids of the architectures the backend can detect here (sorted)."""
    return sorted(str(a.architecture.id) for a in spandrel_registry())


def conv_halo(model: nn.Module) -> int:
    """Upper bound of the receptive-field halo of a purely convolutional network, in input pixels.

    The sum of ``dilation * (kernel - 1) // 2`` over every convolution (residual and dense
    connections do not widen it further); convolutions after an upsampling count as if they
    ran at the input resolution, which overestimates and is safe for tiling.
    """
    halo = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            kh, kw = m.kernel_size
            dh, dw = m.dilation
            halo += max(dh * (kh - 1), dw * (kw - 1)) // 2 + (1 if isinstance(m, nn.ConvTranspose2d) else 0)
    return halo


def _pad_to(x: Tensor, pad_w: int, pad_h: int) -> Tensor:
    """Bottom/right padding as spandrel does (reflect, then replicate for the rest); differentiable."""
    h, w = x.shape[-2:]
    rw, rh = min(pad_w, w - 1), min(pad_h, h - 1)
    if rw or rh:
        x = F.pad(x, (0, rw, 0, rh), mode="reflect")
    if pad_w - rw or pad_h - rh:
        x = F.pad(x, (0, pad_w - rw, 0, pad_h - rh), mode="replicate")
    return x


class SpandrelNet(nn.Module):
    """A network loaded by spandrel, as a differentiable [0, 1] -> [0, 1] RGB module.

    Built by :func:`load_spandrel`; wraps spandrel's model descriptor.

    Attributes:
        arch: spandrel's architecture id (``"ESRGAN"``, ``"DnCNN"``, ...).
        purpose: ``"SR"`` or ``"Restoration"`` (spandrel's).
        scale: upscaling factor from the descriptor (1 for restoration networks).
        input_channels: 3 (RGB) or 1 (applied to each channel).
        tags: spandrel's tags (block counts, feature widths).
        halo: receptive-field halo in input pixels (used as the tile overlap).
        exact_tiling: whether tiles with ``halo`` overlap reproduce the untiled output.
        noise_level: the noise-map value of DRUNet / FDnCNN (in [0, 1] units).
        source: the weight file; ``sha256``: its digest.

    Shape:
        - Input: (N, 3, H, W) in [0, 1].
        - Output: (N, 3, scale*H, scale*W), not clamped (the purifier clamps).
    """

    def __init__(self, descriptor: Any, *, source: str = "", sha256: str = "", noise_level: float = 15 / 255):
        super().__init__()
        self.net: nn.Module = descriptor.model
        self.arch = str(descriptor.architecture.id)
        self.purpose = str(descriptor.purpose)
        self.scale = int(descriptor.scale)
        self.input_channels = int(descriptor.input_channels)
        self.output_channels = int(descriptor.output_channels)
        self.tags = list(descriptor.tags)
        self.size_requirements = descriptor.size_requirements
        self.source = source
        self.sha256 = sha256
        if not 0 <= noise_level <= 1:
            raise ValueError(f"noise_level: expected a value in [0, 1] (e.g. 15/255), got {noise_level!r}")
        self.noise_level = float(noise_level)
        if (self.input_channels, self.output_channels) not in ((3, 3), (1, 1)):
            raise WeightsError(
                f"{source}: spandrel detected {self.arch} with {self.input_channels} input and "
                f"{self.output_channels} output channels; expected an RGB (3 -> 3) or grayscale "
                "(1 -> 1) image-to-image network"
            )
        self._call = self._calling_convention(descriptor)
        reqs = self.size_requirements
        needs_pad = reqs is not None and (reqs.multiple_of > 1 or reqs.square)
        self.exact_tiling = self.arch in LOCAL_ARCHITECTURES and not needs_pad
        self.halo = conv_halo(self.net) if self.exact_tiling else 32
        self.net.eval()

    def _calling_convention(self, descriptor: Any) -> Callable[[Tensor], Tensor]:
        net = self.net
        if self.arch == "DRUNet" or (self.arch == "DnCNN" and getattr(net, "mode", "") == "FDnCNN"):

            def with_noise_map(x: Tensor) -> Tensor:
                n, _, h, w = x.shape
                return net(torch.cat([x, x.new_full((n, 1, h, w), self.noise_level)], dim=1))

            return with_noise_map
        if self.arch in ("FBCNN", "MMRealSR", "GFPGAN"):  # (image, extra output)
            return lambda x: net(x)[0]
        call_fn = getattr(descriptor, "_call_fn", None)  # spandrel's convention for the others
        if call_fn is None:
            return net
        return lambda x: call_fn(net, x)

    def forward(self, x: Tensor) -> Tensor:
        """Restore / upscale ``x``; see the class docstring."""
        n, c, h, w = x.shape
        s = self.scale
        if c != 3:
            raise ValueError(f"{self.arch}: expected RGB input (N, 3, H, W), got {tuple(x.shape)}")
        if n == 0:
            return x.new_zeros(0, 3, s * h, s * w)
        if self.input_channels == 1:
            x = x.reshape(n * 3, 1, h, w)
        reqs = self.size_requirements
        if reqs is not None and not reqs.none:
            pad_w, pad_h = reqs.get_padding(w, h)
            x = _pad_to(x, pad_w, pad_h)
        y = self._call(x)[..., : s * h, : s * w]
        return y.reshape(n, 3, s * h, s * w)

    def extra_repr(self) -> str:
        """Architecture, scale and source."""
        return f"arch={self.arch!r}, scale={self.scale}, tags={self.tags}, source={self.source!r}"


def load_spandrel(
    weights: str | Path,
    *,
    sha256: str | None = None,
    purpose: Purpose | None = None,
    noise_level: float = 15 / 255,
) -> SpandrelNet:
    """Load a checkpoint safely and let spandrel detect its architecture.

    Args:
        weights: ``.safetensors``, ``.pth``, ``.pt`` or ``.ckpt`` state dict (optionally wrapped
            in ``params_ema`` / ``params`` / ``state_dict`` / ``model``).
        sha256: pinned digest (or prefix of >= 8 hex digits) to check first; ``None`` skips.
        purpose: ``"sr"`` requires an upscaling network (scale > 1), ``"restoration"`` a
            scale-1 network (denoiser); ``None`` accepts both.
        noise_level: the noise-map value for DRUNet / FDnCNN, in [0, 1] units (default
            15/255, the authors' default).

    Returns:
        A :class:`SpandrelNet` on the CPU in eval mode.

    Raises:
        SpandrelUnavailableError: spandrel is not installed.
        WeightsError: unreadable file, sha256 mismatch, unknown architecture, wrong purpose.
    """
    spandrel = import_spandrel()
    sd = cached_state_dict(weights, sha256)
    sd = spandrel.canonicalize_state_dict(dict(sd))
    registry = spandrel_registry()
    try:
        desc = registry.load(dict(sd))
    except spandrel.UnsupportedModelError:
        skipped = [a for a in spandrel.MAIN_REGISTRY if str(a.architecture.id) in TORCHVISION_ARCHITECTURES]
        for a in skipped:
            if str(a.architecture.id) not in registry and a.detect(sd):
                arch = str(a.architecture.id)
                raise WeightsError(
                    f"{weights}: spandrel architecture {arch} is not supported here without "
                    f"torchvision ({TORCHVISION_ARCHITECTURES[arch]})"
                ) from None
        raise WeightsError(
            f"{weights}: spandrel does not recognise the architecture of this state dict "
            f"(known: {', '.join(supported_architectures())})"
        ) from None
    except (KeyError, RuntimeError, ValueError, AssertionError) as exc:
        raise WeightsError(f"{weights}: spandrel could not build the network: {exc}") from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise WeightsError(f"{weights}: {desc.architecture.id} is not an image-to-image network")
    if desc.purpose not in ("SR", "Restoration"):
        raise WeightsError(
            f"{weights}: {desc.architecture.id} is a {desc.purpose} network; expected super-resolution "
            "or restoration"
        )
    if purpose == "sr" and desc.scale == 1:
        raise WeightsError(
            f"{weights}: {desc.architecture.id} is a scale-1 restoration network, not super-resolution; "
            "use it as a denoiser (--denoiser spandrel --denoiser-weights FILE)"
        )
    if purpose == "restoration" and desc.scale != 1:
        raise WeightsError(
            f"{weights}: {desc.architecture.id} upscales x{desc.scale}; a denoiser must keep the size "
            "(use it as --sr spandrel --sr-weights FILE)"
        )
    digest = sha256_file(weights)
    return SpandrelNet(desc, source=str(weights), sha256=digest, noise_level=noise_level).eval()


def make_spandrel_sr(
    *,
    weights: str | Path | None = None,
    scale: int | None = None,
    sha256: str | None = None,
    noise_level: float = 15 / 255,
) -> SpandrelNet:
    """Factory of the ``spandrel`` SR backend (``create_sr_model("spandrel", weights=FILE)``).

    ``scale`` is ignored: the factor comes from the checkpoint (``net.scale``).

    Raises:
        WeightsError: no weights given, or see :func:`load_spandrel`.
    """
    del scale
    if weights is None:
        raise WeightsError(
            "SR model 'spandrel' needs weights=PATH (--sr-weights FILE): an ESRGAN, Real-ESRGAN, SwinIR, "
            "HAT, RCAN, OmniSR, SPAN, Real-CUGAN, ... checkpoint (.pth or .safetensors)"
        )
    return load_spandrel(weights, sha256=sha256, purpose="sr", noise_level=noise_level)
