"""Stand-ins shared by the evaluation tests: a tiny classifier, a counting FGSM, purifiers, fixtures.

A test module uses the module-scoped fixtures by binding them to its own names
(``model = _eval_helpers.model``; an imported name that a test's argument shadows trips ruff's F811).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from srdefense.purification import Lambda, Purifier

SIZE = 16


# ---------------------------------------------------------------------------- tiny stand-ins
class TinyNet(nn.Module):
    """A small deterministic CNN (4 classes) whose predictions FGSM can flip."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return 10 * self.fc(torch.tanh(self.conv(x - 0.5)).mean((2, 3)))


class CountingFGSM:
    """FGSM that records every call (the model it saw and the images)."""

    name = "fgsm"
    norm = "linf"
    deterministic = True

    def __init__(self, eps: float) -> None:
        self.eps = eps
        self.calls: list[tuple[nn.Module, Tensor]] = []

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, generator: Any = None) -> Tensor:
        self.calls.append((model, x.detach().clone()))
        xr = x.detach().clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xr), y)
        (g,) = torch.autograd.grad(loss, xr)
        return (x + self.eps * g.sign()).clamp(0, 1).detach()


class Noise(Purifier):
    """A randomised purifier drawing from its generator (to test seeding and resume)."""

    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        n = torch.randn(x.shape, generator=self.generator, device=x.device)
        return (x + 0.02 * n).clamp(0, 1)


def blur() -> Purifier:
    return Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), name="blur")


def upscale() -> Purifier:
    return Lambda(
        lambda x: nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(
            0, 1
        ),
        scale=2,
        name="up",
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    """One intra-op thread for the module that binds this, restored afterwards.

    Tiny tensors: threads only add overhead. On a small shared machine, OpenMP threads that
    wait for each other while other processes hold the cores made ``test_attacks.py`` 30x
    slower (840 s with 2 threads, 26 s with 1, on 2 busy cores); one thread keeps it predictable.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return TinyNet().eval()


def labelled_images(model: nn.Module, n: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` seeded random images of ``size`` x ``size`` and ``model``'s own predictions as labels."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, size, size, generator=g)
    with torch.no_grad():
        labels = model(images).argmax(1)
    return images, labels


@pytest.fixture(scope="module")
def data(model: nn.Module) -> tuple[Tensor, Tensor, list[str]]:
    images, labels = labelled_images(model, 14, SIZE, seed=1)
    labels[::5] = (labels[::5] + 1) % 4  # some clean errors
    return images, labels, [f"img{i:02d}" for i in range(14)]


def summary_of(path: Path) -> list[dict[str, Any]]:
    return json.loads((path / "results.json").read_text())["summary"]
