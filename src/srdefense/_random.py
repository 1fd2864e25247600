"""Random draws shared by the attacks and the randomised defenses (one module for both).

Every draw is made on the generator's device (so that one seeded generator replays the same
numbers whatever device the images are on) and then moved where it is needed.

* the defenses' draws (:func:`rand`, :func:`randint`) default to the CPU generator when none
  is given and are float32 / int64;
* the attacks' draws (:func:`rand_like`, :func:`randn_like`) default to the device of the
  tensor they are shaped like and take its dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["make_generator", "rand", "rand_like", "randint", "randn_like"]


def make_generator(
    generator: torch.Generator | None = None, seed: int | None = None
) -> torch.Generator | None:
    """Return ``generator``, or a new CPU generator seeded with ``seed``, or ``None``.

    Raises:
        ValueError: if both are given.
        TypeError: if ``generator`` is not a ``torch.Generator``.
    """
    if generator is not None and seed is not None:
        raise ValueError("pass either generator or seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        g = torch.Generator()
        g.manual_seed(int(seed))
        return g
    return generator


def _gen_device(generator: torch.Generator | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) float32 draws from ``generator``, returned on ``device``."""
    u = torch.rand(shape, generator=generator, device=_gen_device(generator))
    return u.to(device)


def randint(
    low: int | Tensor,
    high: int | Tensor,
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """Integers uniform in ``[low, high)`` (elementwise bounds allowed), as int64 on ``device``."""
    u = torch.rand(shape, generator=generator, device=_gen_device(generator), dtype=torch.float64).to(device)
    low_t = torch.as_tensor(low, device=device)
    span = torch.as_tensor(high, device=device) - low_t
    k = torch.floor(u * span).to(torch.int64)
    return low_t + torch.minimum(k, span - 1)


def rand_like(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Uniform [0, 1) draw of ``shape`` made on the generator's device, moved to ``like``'s."""
    dev = generator.device if generator is not None else like.device
    return torch.rand(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)


def randn_like(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal draw of ``shape`` made on the generator's device, moved to ``like``'s."""
    dev = generator.device if generator is not None else like.device
    return torch.randn(shape, generator=generator, device=dev, dtype=like.dtype).to(like.device)
