"""Composition of purifiers, the resolution policy and the defended model."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from .._validation import check_image_batch
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

    @property
    def differentiable(self) -> bool:  # type: ignore[override]
        """True only if every stage has a true gradient."""
        return all(s.differentiable for s in self.stages)  # type: ignore[attr-defined]

    @property
    def randomized(self) -> bool:  # type: ignore[override]
        """True if any stage is randomised."""
        return any(s.randomized for s in self.stages)  # type: ignore[attr-defined]

    @property
    def per_sample_draws(self) -> bool:  # type: ignore[override]
        """True if every randomised stage draws image by image."""
        return all(s.per_sample_draws for s in self.stages if s.randomized)  # type: ignore[attr-defined]

    @property
    def scale(self) -> int:  # type: ignore[override]
        """Product of the stages' scales."""
        out = 1
        for s in self.stages:
            out *= s.scale  # type: ignore[attr-defined]
        return out

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
        h, w = x.shape[-2] // self.factor, x.shape[-1] // self.factor
        y = nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True)
        return y.clamp(0, 1)

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Differentiable already: the stage itself."""
        return self.purify(x)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        return f"factor={self.factor}"


ResolutionPolicy = Literal["purified", "native"]


class Defended(nn.Module):
    """A classifier behind a purifier: ``logits = classifier(purifier(images))``.

    Args:
        purifier: the defense (any :class:`Purifier`).
        classifier: any ``nn.Module`` mapping [0, 1] images to logits (normalisation inside).
        resolution: ``"purified"`` classifies the purifier's output as is (the 2x image, as the
            paper does); ``"native"`` resizes it back to the input size with antialiasing.
    """

    def __init__(
        self, purifier: Purifier, classifier: nn.Module, resolution: ResolutionPolicy = "purified"
    ) -> None:
        super().__init__()
        if resolution not in ("purified", "native"):
            raise ValueError(f"resolution: expected 'purified' or 'native', got {resolution!r}")
        self.purifier = purifier
        self.classifier = classifier
        self.resolution = resolution

    def purify_and_classify(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(logits, purified)``: the logits of :meth:`forward` and the purified images they came from."""
        check_image_batch(images, "images")
        purified = self.purifier(images)
        x = purified
        if self.resolution == "native" and x.shape[-2:] != images.shape[-2:]:
            x = nn.functional.interpolate(x, size=images.shape[-2:], mode="bilinear", antialias=True).clamp(
                0, 1
            )
        return self.classifier(x), purified

    def forward(self, images: Tensor) -> Tensor:
        """Purify then classify; returns logits (N, num_classes)."""
        return self.purify_and_classify(images)[0]
