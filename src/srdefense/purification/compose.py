"""Composition of purifiers, the resolution policy and the defended model."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

from .._validation import check_image_batch
from ..data.transforms import resize_to
from .base import Purifier


class Compose(Purifier):
    """Apply purifiers in order; gradient and randomness flags are derived from the stages.

    Args:
        *stages: the purifiers, applied left to right.
    """

    def __init__(self, *stages: Purifier) -> None:
        super().__init__()
        if not stages:
            raise ValueError("Compose needs at least one stage")
        for i, s in enumerate(stages):
            if not isinstance(s, Purifier):
                raise TypeError(f"stage {i}: expected a Purifier, got {type(s).__name__}")
        self.stages = nn.ModuleList(stages)
        # declared as every purifier declares them (attributes), from the stages, which a
        # Compose never changes: a true gradient only if every stage has one, randomised if
        # any stage is, drawing image by image if every randomised stage does, and the product of the scales
        self.differentiable = all(s.differentiable for s in stages)
        self.randomized = any(s.randomized for s in stages)
        self.per_sample_draws = all(s.per_sample_draws for s in stages if s.randomized)
        self.scale = math.prod(s.scale for s in stages)

    def purify(self, x: Tensor) -> Tensor:
        """Run every stage (each enforces its own gradient contract)."""
        for s in self.stages:
            x = s(x)
        return x

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Chain of the stages' stand-ins."""
        for s in self.stages:
            x = s.bpda_surrogate(x)  # type: ignore[operator]
        return x

    def __getitem__(self, i: int) -> Purifier:
        return self.stages[i]  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.stages)

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(s) for s in self.stages) + ")"


class ResizeBack(Purifier):
    """Resize a purified image back to a fixed size with antialiasing (differentiable).

    Used as the last stage of a defense when the classifier should see its native input size
    instead of the 2x image the paper classifies.

    Args:
        factor: the upscaling factor to undo (the output is (H // factor, W // factor)).
    """

    reference = "resolution policy: classify at the native size"

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor: expected >= 1, got {factor}")
        self.factor = factor

    def purify(self, x: Tensor) -> Tensor:
        """Antialiased bilinear downscaling by ``factor``."""
        if self.factor == 1:
            return x
        return resize_to(x, (x.shape[-2] // self.factor, x.shape[-1] // self.factor))

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Differentiable already: the stage itself."""
        return self.purify(x)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"factor={self.factor}"


ResolutionPolicy = Literal["purified", "native"]
"""What the classifier receives: the purifier's output as is, or that resized to the input size."""

RESOLUTIONS: tuple[str, ...] = ("purified", "native")
#: Older spellings accepted wherever a user names the policy (spec strings, YAML, CLI, HTTP).
RESOLUTION_ALIASES: dict[str, str] = {"2x": "purified"}


def resolution_policy(value: str) -> ResolutionPolicy:
    """The resolution policy named ``value``: ``"purified"`` (alias ``"2x"``) or ``"native"``.

    Raises:
        ValueError: for any other value, naming the accepted ones.
    """
    policy = RESOLUTION_ALIASES.get(value, value) if isinstance(value, str) else value
    if policy not in RESOLUTIONS:
        raise ValueError(f"resolution: expected 'purified' (alias '2x') or 'native', got {value!r}")
    return policy  # type: ignore[return-value]


class Defended(nn.Module):
    """A classifier behind a purifier: ``logits = classifier(purifier(images))``.

    Args:
        purifier: the defense (any :class:`Purifier`).
        classifier: any ``nn.Module`` mapping [0, 1] images to logits (normalisation inside).
        resolution: ``"purified"`` (alias ``"2x"``) classifies the purifier's output as is (the
            2x image, as the paper does); ``"native"`` resizes it back to the input size with
            antialiasing.
    """

    def __init__(self, purifier: Purifier, classifier: nn.Module, resolution: str = "purified") -> None:
        super().__init__()
        policy = resolution_policy(resolution)
        self.purifier = purifier
        self.classifier = classifier
        self.resolution: ResolutionPolicy = policy

    def purify_and_classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, purified)``: the logits of :meth:`forward` and the purified images they came from."""
        check_image_batch(images, "images")
        purified = self.purifier(images)
        x = purified
        if self.resolution == "native" and x.shape[-2:] != images.shape[-2:]:
            x = resize_to(x, (images.shape[-2], images.shape[-1]))
        return self.classifier(x), purified

    def forward(self, images: Tensor) -> Tensor:
        """Purify then classify; returns logits (N, num_classes)."""
        return self.purify_and_classify(images)[0]
