"""The classifier registry: weight metadata as frozen dataclasses, ``create_classifier`` and friends.

Modelled on timm's ``register_model`` / ``create_model`` / ``PretrainedCfg`` and RobustBench's
model zoo: an entry is a :class:`ClassifierCfg` (where the weights come from, their sha256,
the preprocessing they expect) plus a builder. Every classifier returned by
:func:`create_classifier` takes float images in [0, 1], NCHW, returns logits, is in eval mode,
and exposes its metadata as ``.cfg``.

Besides registered names, :func:`create_classifier` accepts ``SCHEME:NAME`` for every scheme
of :data:`srdefense.models.schemes.SCHEMES` (see :mod:`.adapters`):

- ``timm:NAME``: a timm model with its pretrained weights (needs ``timm``);
- ``torchvision:NAME``: a torchvision model with its default weights (needs ``torchvision``);

and user code:

- ``path/to/module.py:factory`` or ``package.module:factory``: any user model; ``factory()``
  returns an ``nn.Module`` and ``weights=FILE`` loads a state dict into it safely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from .._registry import Registry
from .._weights import sha256_file, verify_sha256, weights_fingerprint
from . import adapters
from .cfg import IMAGENET_MEAN, IMAGENET_STD, ClassifierCfg, ClassifierLoadError
from .normalize import NormalizedClassifier, _triple
from .schemes import SCHEMES

__all__ = [
    "CLASSIFIERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClassifierCfg",
    "ClassifierEntry",
    "ClassifierLoadError",
    "create_classifier",
    "get_classifier_cfg",
    "list_classifiers",
    "register_classifier",
    "wrap_classifier",
]

Builder = Callable[[ClassifierCfg, Path | None], nn.Module]


@dataclass(frozen=True)
class ClassifierEntry:
    """A registry entry: the metadata and ``build(cfg, weights_path) -> nn.Module``.

    The builder returns the bare network (taking normalised input) with the weights loaded;
    :func:`create_classifier` adds the normalisation layer, eval mode and the device.
    """

    cfg: ClassifierCfg
    build: Builder


CLASSIFIERS: Registry[ClassifierEntry] = Registry("classifier")


def register_classifier(cfg: ClassifierCfg) -> Callable[[Builder], Builder]:
    """Decorator registering ``build(cfg, weights_path) -> nn.Module`` under ``cfg.name``.

    ``weights_path`` is ``None`` for the default weights (the builder then loads
    ``cfg.weights_path()`` checking ``cfg.sha256``) or a user-given file; then
    ``cfg.weights_file`` is that file and ``cfg.sha256`` its user pin (``None``: unpinned). A
    builder that loads with :func:`srdefense._weights.load_weights` and records the digest
    with ``mark_weights`` lets the classifier report exactly which bytes it loaded.

    Example:
        >>> @register_classifier(ClassifierCfg(name="tiny", architecture="cnn",  # doctest: +SKIP
        ...                                    description="...", source="...", license="MIT"))
        ... def _build(cfg, weights_path):
        ...     return TinyNet()
    """

    def deco(build: Builder) -> Builder:
        CLASSIFIERS.add(cfg.name, ClassifierEntry(cfg=cfg, build=build))
        return build

    return deco


def list_classifiers() -> list[ClassifierCfg]:
    """The registered classifiers' metadata, sorted by name (adapter and user specs are not listed)."""
    return [CLASSIFIERS.get(n).cfg for n in CLASSIFIERS.names()]


def get_classifier_cfg(name: str) -> ClassifierCfg:
    """Return the :class:`ClassifierCfg` of a registered classifier.

    Raises:
        KeyError: for an unknown name, listing the known names.
    """
    return CLASSIFIERS.get(name).cfg


_M = TypeVar("_M", bound=nn.Module)


def _finish(model: _M, device: torch.device | str | None) -> _M:
    model.eval()
    if device is not None:
        model.to(device)
    return model


def wrap_classifier(
    model: nn.Module,
    *,
    mean: Sequence[float] | float = IMAGENET_MEAN,
    std: Sequence[float] | float = IMAGENET_STD,
    input_size: tuple[int, int, int] = (3, 224, 224),
    name: str = "custom",
    num_classes: int = 1000,
    interpolation: str = "bicubic",
    crop_pct: float = 0.875,
    label_set: str = "imagenet",
    description: str = "user model",
    source: str = "user",
    license: str = "unknown",
    device: torch.device | str | None = None,
) -> NormalizedClassifier:
    """Turn any network into an srdefense classifier: [0, 1] input, normalisation inside.

    Args:
        model: a network taking images normalised with ``mean``/``std`` and returning logits.
        mean: per-channel mean in [0, 1] units (use ``0`` and ``1`` when the model takes [0, 1]).
        std: per-channel std in [0, 1] units.
        input_size: (C, H, W) the model was trained at.
        name: a name for the metadata.
        num_classes: number of logits.
        interpolation: resize interpolation of its standard preprocessing.
        crop_pct: centre-crop fraction of its standard preprocessing.
        label_set: label space of the logits.
        description: one line describing it.
        source: where it comes from.
        license: its licence, if known.
        device: move it there (``None``: leave it where it is).

    Returns:
        A :class:`NormalizedClassifier` in eval mode, with ``.cfg``.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10))
        >>> clf = wrap_classifier(net, mean=0.5, std=0.5, input_size=(3, 8, 8), num_classes=10)
        >>> clf(torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 10])
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    cfg = ClassifierCfg(
        name=name,
        architecture=type(model).__name__,
        description=description,
        source=source,
        license=license,
        input_size=tuple(int(v) for v in input_size),  # type: ignore[arg-type]
        mean=_triple(mean, "mean"),
        std=_triple(std, "std"),
        interpolation=interpolation,
        crop_pct=float(crop_pct),
        num_classes=int(num_classes),
        label_set=label_set,
        max_input="depends on the architecture",
    )
    return _finish(NormalizedClassifier(model, cfg), device)


def create_classifier(
    name: str,
    *,
    weights: str | Path | None = None,
    weights_sha256: str | None = None,
    device: torch.device | str | None = None,
) -> NormalizedClassifier:
    """Build a classifier: eval mode, float [0, 1] NCHW input, logits output, ``.cfg`` attached.

    Args:
        name: a registered name (see :func:`list_classifiers`), ``timm:NAME``,
            ``torchvision:NAME``, or ``module.py:factory`` / ``package.module:factory``.
        weights: a weight file (``.safetensors`` or a torch state dict, read with
            ``weights_only=True``) to load instead of the default ones. The registered
            default files are pinned; a user file is pinned by ``weights_sha256``. Either way
            ``model.cfg.weights_file``/``model.cfg.sha256`` then name that file and the sha256
            of the bytes loaded (also in :func:`srdefense.weights_fingerprint`).
        weights_sha256: pin for ``weights`` (full digest or >= 8 hex digits); a mismatch
            raises ``WeightsError`` naming the file and both digests.
        device: move the classifier there.

    Returns:
        The classifier.

    Raises:
        KeyError: for an unknown registered name, listing the known ones.
        ClassifierLoadError: when a package, factory or weight file is missing or wrong.
        srdefense._weights.WeightsError: when a weight file fails its sha256 pin or is unsafe.

    Example:
        >>> clf = create_classifier("efficientnet_lite0")
        >>> clf(torch.rand(1, 3, 224, 224)).shape
        torch.Size([1, 1000])
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name: expected a non-empty string, got {name!r}")
    if weights_sha256 is not None and weights is None:
        raise ValueError("weights_sha256: pins the file given as weights, and none was given")
    scheme, sep, rest = name.partition(":")
    if sep and scheme in SCHEMES:
        model = SCHEMES.get(scheme)(rest, weights=weights, weights_sha256=weights_sha256)
    elif name in CLASSIFIERS or ":" not in name:
        entry = CLASSIFIERS.get(name)
        cfg = entry.cfg
        if weights is None:
            net = entry.build(cfg, None)
        else:
            # the builder sees the user file and its pin (None: unpinned) in cfg
            cfg = dataclasses.replace(
                cfg, weights_package=None, weights_file=str(weights), sha256=weights_sha256
            )
            if weights_sha256 is not None:
                verify_sha256(weights, weights_sha256)  # also for builders that ignore cfg.sha256
            net = entry.build(cfg, Path(weights))
            marks = weights_fingerprint(net)
            digest = marks[0]["sha256"] if len(marks) == 1 else sha256_file(weights)
            cfg = dataclasses.replace(cfg, sha256=digest)
        model = NormalizedClassifier(net, cfg, channels_last=cfg.channels_last)
    else:
        model = adapters.user_classifier(name, weights=weights, weights_sha256=weights_sha256)
    return _finish(model, device)  # type: ignore[return-value]
