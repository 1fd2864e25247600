"""A tiny stand-in classifier for the service tests (also loadable as ``serve_standin.py:factory``)."""

from __future__ import annotations

import time

import torch
from torch import Tensor, nn

from srdefense.models import wrap_classifier


class TinyServeNet(nn.Module):
    """A small deterministic CNN over 10 classes whose predictions FGSM can flip.

    Args:
        delay: seconds each forward pass sleeps (to hold the worker busy in a test).
    """

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.delay = delay

    def forward(self, x: Tensor) -> Tensor:
        if self.delay:
            time.sleep(self.delay)
        return 4 * self.fc(torch.tanh(self.conv(x)).mean((2, 3)))


def factory(delay: float = 0.0) -> nn.Module:
    """The stand-in as an srdefense classifier: [0, 1] input, 32x32, 10 classes."""
    return wrap_classifier(
        TinyServeNet(delay),
        mean=0.5,
        std=0.5,
        input_size=(3, 32, 32),
        num_classes=10,
        label_set="tiny",
        name="tiny",
    )
