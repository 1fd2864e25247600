"""Small deterministic models for the attack tests (APGD, Square, AutoAttack)."""

from __future__ import annotations

import torch
from torch import nn


class ToyNet(nn.Module):
    """A smooth little CNN: 3x12x12 images -> 10 logits (tanh, no kinks)."""

    def __init__(self, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.head = nn.Linear(6 * 6 * 6, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        self.to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x * 4 - 2))
        h = nn.functional.avg_pool2d(h, 2)
        return self.head(h.flatten(1)) * 3


class _NoBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[override]
        return x.clone()

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        raise RuntimeError("this model has no gradient")


class NoGradNet(nn.Module):
    """Wraps a model so that any backward pass raises (for the gradient-free check)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(_NoBackward.apply(x))


class Quantised(nn.Module):
    """Rounds its input to 4 levels first: gradient zero almost everywhere (masked gradients)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 3) / 3)


class Counting(nn.Module):
    """Counts the images it is asked to classify."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return self.model(x)


def toy_batch(
    n: int = 6, seed: int = 0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images in [0, 1] and the toy model's own predictions as labels (all 'correct')."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 12, 12, generator=g).to(dtype)
    with torch.no_grad():
        y = ToyNet(dtype=dtype)(x).argmax(1)
    return x, y
