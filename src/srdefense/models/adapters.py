"""Classifiers from elsewhere: timm, torchvision, and user code given as ``module:factory``.

Each adapter returns a :class:`~srdefense.models.NormalizedClassifier` (float [0, 1] input,
normalisation inside, logits out, ``.cfg`` attached). The normalisation and preprocessing of
timm and torchvision models are taken from their own metadata (``pretrained_cfg`` for timm, the
weights' ``transforms()`` for torchvision).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from torch import nn

from .._weights import WeightsError, load_weights, mark_weights
from .cfg import ClassifierCfg, ClassifierLoadError
from .normalize import NormalizedClassifier
from .schemes import register_scheme

_CPU_HINT = "(on a CPU-only machine add `--extra-index-url https://download.pytorch.org/whl/cpu`)"


class MissingDependencyError(ClassifierLoadError, ImportError):
    """Raised when an adapter's package (timm, torchvision) is not installed or fails to import."""


def _import_optional(module: str, dist: str, spec: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.split(".")[0] == module.split(".")[0]:
            raise MissingDependencyError(
                f"the classifier {spec!r} needs the package {dist}, which is not installed; "
                f"install it with `pip install {dist}` {_CPU_HINT}"
            ) from exc
        raise MissingDependencyError(
            f"the classifier {spec!r} needs the package {dist}, which is installed but cannot be "
            f"imported ({exc}); install it with its dependencies: `pip install {dist}` {_CPU_HINT}"
        ) from exc
    except Exception as exc:  # a broken installation: version clash with torch, etc.
        raise MissingDependencyError(
            f"the classifier {spec!r} needs the package {dist}, which fails to import "
            f"({type(exc).__name__}: {exc}); reinstall it with `pip install -U {dist}` {_CPU_HINT}"
        ) from exc


def _load_weights_into(model: nn.Module, weights: str | Path, what: str, sha256: str | None = None) -> str:
    """Load ``weights`` (checked against ``sha256`` if given) into ``model``; return the digest."""
    state, digest = load_weights(weights, sha256)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{weights} does not fit {what}: {exc}") from exc
    mark_weights(model, weights, digest, sha256)
    return digest


def _label_set(num_classes: int) -> str:
    return "imagenet" if num_classes == 1000 else f"{num_classes} classes"


@register_scheme("timm")
def timm_classifier(
    name: str, *, weights: str | Path | None = None, weights_sha256: str | None = None
) -> NormalizedClassifier:
    """A timm model with its pretrained weights (``timm.create_model(name, pretrained=True)``).

    Args:
        name: the timm model name, optionally with a pretrained tag (``resnet50.a1_in1k``).
        weights: a local weight file to load instead of downloading the pretrained ones.
        weights_sha256: pin for ``weights`` (full digest or >= 8 hex digits).

    Returns:
        The classifier, normalisation from the model's ``pretrained_cfg``.

    Raises:
        MissingDependencyError: if timm is not installed or fails to import.
        ClassifierLoadError: if timm cannot build the model (unknown name, download failure).
    """
    spec = f"timm:{name}"
    timm = _import_optional("timm", "timm", spec)
    try:
        model = timm.create_model(name, pretrained=weights is None)
    except Exception as exc:
        raise ClassifierLoadError(f"timm cannot build {name!r}: {type(exc).__name__}: {exc}") from exc
    digest = None
    if weights is not None:
        digest = _load_weights_into(model, weights, f"timm model {name!r}", weights_sha256)
    pc: Any = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    if not isinstance(pc, dict):
        pc = pc.to_dict() if hasattr(pc, "to_dict") else vars(pc)
    num_classes = int(getattr(model, "num_classes", None) or pc.get("num_classes", 1000))
    source = pc.get("hf_hub_id") or pc.get("url") or "timm"
    cfg = ClassifierCfg(
        name=spec,
        architecture=pc.get("architecture", name.split(".")[0]),
        description=f"timm {name}",
        source=f"timm {getattr(timm, '__version__', '?')}: {source}"
        if weights is None
        else f"timm {name} with weights {weights}",
        license=str(pc.get("license", "see the model card")),
        weights_file=None if weights is None else str(weights),
        sha256=digest,
        input_size=tuple(int(v) for v in pc.get("input_size", (3, 224, 224))),  # type: ignore[arg-type]
        mean=tuple(float(v) for v in pc.get("mean", (0.485, 0.456, 0.406))),  # type: ignore[arg-type]
        std=tuple(float(v) for v in pc.get("std", (0.229, 0.224, 0.225))),  # type: ignore[arg-type]
        interpolation=str(pc.get("interpolation", "bicubic")),
        crop_pct=float(pc.get("crop_pct", 0.875)),
        num_classes=num_classes,
        label_set=_label_set(num_classes),
        max_input="depends on the architecture (CNNs: any size; ViTs: the training size only)",
    )
    return NormalizedClassifier(model, cfg)


@register_scheme("torchvision")
def torchvision_classifier(
    name: str, *, weights: str | Path | None = None, weights_sha256: str | None = None
) -> NormalizedClassifier:
    """A torchvision model with its default weights (``get_model(name, weights="DEFAULT")``).

    Args:
        name: the torchvision model name (``resnet50``, ``inception_v3``, ...).
        weights: a local weight file to load instead of downloading the default ones (the
            preprocessing metadata still comes from the default weights).
        weights_sha256: pin for ``weights`` (full digest or >= 8 hex digits).

    Returns:
        The classifier, normalisation from the weights' ``transforms()``.

    Raises:
        MissingDependencyError: if torchvision is not installed or fails to import.
        ClassifierLoadError: if torchvision cannot build the model.
    """
    spec = f"torchvision:{name}"
    tvm = _import_optional("torchvision.models", "torchvision", spec)
    try:
        w = tvm.get_model_weights(name).DEFAULT
        model = tvm.get_model(name, weights=w if weights is None else None)
    except Exception as exc:
        raise ClassifierLoadError(f"torchvision cannot build {name!r}: {type(exc).__name__}: {exc}") from exc
    digest = None
    if weights is not None:
        digest = _load_weights_into(model, weights, f"torchvision model {name!r}", weights_sha256)
    t = w.transforms()
    crop = int(t.crop_size[0])
    resize = int(t.resize_size[0])
    interp = getattr(t.interpolation, "value", str(t.interpolation))
    num_classes = len(w.meta.get("categories", [])) or 1000
    cfg = ClassifierCfg(
        name=spec,
        architecture=name,
        description=f"torchvision {name} ({w})",
        source=f"torchvision: {w.url}" if weights is None else f"torchvision {name} with weights {weights}",
        license="BSD-3-Clause (torchvision); weights: see the torchvision model documentation",
        weights_file=None if weights is None else str(weights),
        sha256=digest,
        input_size=(3, crop, crop),
        mean=tuple(float(v) for v in t.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in t.std),  # type: ignore[arg-type]
        interpolation=str(interp),
        crop_pct=crop / resize,
        num_classes=num_classes,
        label_set=_label_set(num_classes),
        max_input="depends on the architecture (CNNs: any size; ViTs: the training size only)",
    )
    return NormalizedClassifier(model, cfg)


def _import_user_module(spec: str, module_part: str) -> tuple[ModuleType, str]:
    is_path = module_part.endswith(".py") or "/" in module_part or "\\" in module_part
    if is_path:
        path = Path(module_part).expanduser().resolve()
        if not path.is_file():
            raise ClassifierLoadError(f"classifier {spec!r}: module file {path} not found")
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        mod_name = f"_srdefense_user_{path.stem}_{digest}"
        ispec = importlib.util.spec_from_file_location(mod_name, path)
        if ispec is None or ispec.loader is None:
            raise ClassifierLoadError(f"classifier {spec!r}: {path} is not an importable Python file")
        module = importlib.util.module_from_spec(ispec)
        sys.modules[mod_name] = module
        try:
            ispec.loader.exec_module(module)
        except Exception as exc:
            sys.modules.pop(mod_name, None)
            raise ClassifierLoadError(
                f"classifier {spec!r}: importing {path} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return module, str(path)
    try:
        return importlib.import_module(module_part), module_part
    except Exception as exc:
        raise ClassifierLoadError(
            f"classifier {spec!r}: cannot import module {module_part!r}: {type(exc).__name__}: {exc}"
        ) from exc


def user_classifier(
    spec: str, *, weights: str | Path | None = None, weights_sha256: str | None = None
) -> NormalizedClassifier:
    """A user model from ``path/to/module.py:factory`` or ``package.module:factory``.

    ``factory()`` is called without arguments and returns an ``nn.Module``: either a network
    that takes [0, 1] images itself (it is wrapped with an identity normalisation), or a
    classifier made with :func:`~srdefense.models.wrap_classifier`, which declares its
    mean/std. ``weights`` is loaded into the network (``strict=True``) with
    ``weights_only=True`` or safetensors.

    Args:
        spec: ``MODULE:FACTORY``.
        weights: a state-dict file for the network.
        weights_sha256: pin for ``weights`` (full digest or >= 8 hex digits).

    Returns:
        The classifier.

    Raises:
        ClassifierLoadError: naming the file or factory that is missing or failing.
        srdefense._weights.WeightsError: when the weight file is unreadable or does not fit.
    """
    module_part, sep, factory_name = spec.rpartition(":")
    if not sep or not module_part or not factory_name:
        raise ClassifierLoadError(
            f"classifier {spec!r}: expected 'path/to/module.py:factory' or 'package.module:factory'"
        )
    module, where = _import_user_module(spec, module_part)
    factory = getattr(module, factory_name, None)
    if factory is None:
        found = sorted(
            k
            for k, v in vars(module).items()
            if callable(v) and not k.startswith("_") and not isinstance(v, type)
        )
        raise ClassifierLoadError(
            f"classifier {spec!r}: {where} has no factory {factory_name!r}; "
            f"functions there: {', '.join(found) or '(none)'}"
        )
    if not callable(factory):
        raise ClassifierLoadError(f"classifier {spec!r}: {factory_name!r} in {where} is not callable")
    try:
        model = factory()
    except Exception as exc:
        raise ClassifierLoadError(
            f"classifier {spec!r}: factory {factory_name!r} in {where} raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ClassifierLoadError(
            f"classifier {spec!r}: factory {factory_name!r} in {where} returned "
            f"{type(model).__name__}, expected a torch.nn.Module"
        )
    if isinstance(model, NormalizedClassifier):
        net, cfg = model.model, model.cfg
    else:
        net = model
        cfg = ClassifierCfg(
            name=spec,
            architecture=type(model).__name__,
            description=f"user model {factory_name}() from {where}",
            source=where,
            license="unknown",
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            num_classes=int(getattr(model, "num_classes", 1000)),
            max_input="depends on the architecture",
        )
    if weights is not None:
        what = f"the model of factory {factory_name!r} in {where}"
        digest = _load_weights_into(net, weights, what, weights_sha256)
        cfg = dataclasses.replace(cfg, weights_file=str(weights), sha256=digest)
    return NormalizedClassifier(net, cfg)
