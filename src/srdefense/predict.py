"""``srdefense.classify``: classify image files (or tensors), optionally behind a defense.

The library function behind ``srdefense classify`` (the command only parses its options and
prints what this returns). Every image gets the classifier's standard preprocessing (resize the
shorter side, centre crop); an image that cannot be read or classified is reported in
:attr:`ClassifyResult.errors` and the others are still classified.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .data.io import DEFAULT_MAX_PIXELS, ImageReadError, read_image
from .data.transforms import resize_center_crop
from .models import create_classifier
from .models.imagenet import imagenet_classes, imagenet_wnids
from .purification import Defended, Purifier, create_defense

__all__ = ["Classification", "ClassifyFailure", "ClassifyResult", "Prediction", "classify"]


@dataclass(frozen=True)
class Prediction:
    """One of the top-k classes of an image.

    Attributes:
        rank: 1 for the most probable class.
        index: the logit index.
        wnid: the ImageNet WordNet id (``None`` for a classifier without ImageNet's 1000 labels).
        name: the class name (the index as text without ImageNet labels).
        probability: softmax probability.
    """

    rank: int
    index: int
    wnid: str | None
    name: str
    probability: float


@dataclass(frozen=True)
class Classification:
    """The top-k classes of one input.

    Attributes:
        source: the file, or ``"<tensor K>"`` for the K-th tensor input.
        predictions: the top-k classes, most probable first.
    """

    source: str
    predictions: list[Prediction]


@dataclass(frozen=True)
class ClassifyFailure:
    """An input that could not be read or classified, and why."""

    source: str
    error: str


@dataclass(frozen=True)
class ClassifyResult:
    """What :func:`classify` returns.

    Attributes:
        classifier: the classifier's name (its ``cfg.name``, or the spec given).
        defense: the defense spec, or the purifier's class name.
        results: one entry per input classified, in input order.
        errors: the inputs skipped, with the reason.
    """

    classifier: str
    defense: str
    results: list[Classification] = field(default_factory=list)
    errors: list[ClassifyFailure] = field(default_factory=list)


def _top_k(probs: Tensor, k: int) -> list[Prediction]:
    names, wnids = imagenet_classes(), imagenet_wnids()
    named = len(names) == probs.numel()
    top = probs.topk(min(k, probs.numel()))
    return [
        Prediction(
            rank=rank,
            index=i,
            wnid=wnids[i] if named else None,
            name=names[i] if named else str(i),
            probability=p,
        )
        for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1)
    ]


def classify(
    inputs: Sequence[str | Path | Tensor],
    *,
    classifier: str | nn.Module = "efficientnet_lite0",
    defense: str | Purifier = "none",
    top_k: int = 5,
    device: torch.device | str = "cpu",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    classifier_weights: str | Path | None = None,
    classifier_weights_sha256: str | None = None,
) -> ClassifyResult:
    """Classify images, optionally behind a defense, and return the top-k classes of each.

    Args:
        inputs: image files (any format PIL reads) or (3, H, W) float tensors in [0, 1].
        classifier: a classifier spec (see :func:`srdefense.create_classifier`) or a built
            classifier with a ``cfg`` (a :class:`~srdefense.models.NormalizedClassifier`).
        defense: a defense spec (``"paper"``, ``"wd:sigma=0.02"``; ``"none"``: no defense) or a
            built purifier.
        top_k: classes per image (1 to the number of classes).
        device: where to run.
        max_pixels: refuse image files with more pixels (``None``: no limit).
        classifier_weights: weight file for a classifier spec (see ``create_classifier``).
        classifier_weights_sha256: pin for ``classifier_weights``.

    Returns:
        A :class:`ClassifyResult`; unreadable inputs are in its ``errors``.

    Raises:
        ValueError: for a ``top_k`` below 1 or a bad defense spec.
        KeyError: for an unknown classifier or defense name (listing the known ones).
        srdefense.models.ClassifierLoadError: when the classifier cannot be built.

    Example:
        >>> res = classify(["photo.jpg"], defense="paper", top_k=3)  # doctest: +SKIP
        >>> res.results[0].predictions[0].name  # doctest: +SKIP
        'jeep'
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k: expected an integer >= 1, got {top_k!r}")
    model: nn.Module
    if isinstance(classifier, str):
        model = create_classifier(
            classifier, weights=classifier_weights, weights_sha256=classifier_weights_sha256
        )
        name = classifier
    else:
        if classifier_weights is not None or classifier_weights_sha256 is not None:
            raise ValueError("classifier_weights: only for a classifier spec, not a built classifier")
        model, name = classifier, getattr(getattr(classifier, "cfg", None), "name", type(classifier).__name__)
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise TypeError("classifier: expected a spec or a classifier with .cfg (see wrap_classifier)")
    purifier = create_defense(defense) if isinstance(defense, str) else defense
    label = defense if isinstance(defense, str) else type(defense).__name__
    defended = Defended(purifier, model).to(device).eval()
    out = ClassifyResult(classifier=name, defense=label)
    for k, item in enumerate(inputs):
        source = f"<tensor {k}>" if isinstance(item, Tensor) else str(item)
        try:
            if isinstance(item, Tensor):
                if item.ndim != 3 or item.shape[0] != 3 or not torch.is_floating_point(item):
                    shape = tuple(item.shape)
                    raise ValueError(f"expected a float (3, H, W) image, got {item.dtype} {shape}")
                image = item
            else:
                image = read_image(item, max_pixels=max_pixels or None)
            image = resize_center_crop(image, cfg.input_size[-1], crop_pct=cfg.crop_pct)
            with torch.no_grad():
                probs = defended(image.unsqueeze(0).to(device)).softmax(-1)[0].cpu()
        except (ImageReadError, OSError, ValueError, RuntimeError) as exc:
            out.errors.append(ClassifyFailure(source=source, error=str(exc)))
            continue
        out.results.append(Classification(source=source, predictions=_top_k(probs, top_k)))
    return out
