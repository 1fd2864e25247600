"""Random draws shared by the attacks and the randomised defenses (one module for both).

Every draw is made on the generator's device (so that one seeded generator replays the same
numbers whatever device the images are on) and then moved where it is needed. A leaf module:
it imports nothing from the package.

* the defenses' draws (:func:`rand`, :func:`randint`) default to the CPU generator when none
  is given and are float32 / int64; a :class:`GeneratorBank` in place of the generator gives
  each image of a batch its own generator;
* the attacks' draws (:func:`rand_like`, :func:`randn_like`) default to the device of the
  tensor they are shaped like and take its dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GeneratorBank", "RandomSource", "make_generator", "rand", "rand_like", "randint", "randn_like"]


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


class GeneratorBank:
    """One CPU generator per image of a batch: the batch's draws are each image's draws alone.

    A defense that declares ``per_sample_draws`` draws its random numbers image-major (every
    draw has the batch as its leading dimension, or a leading dimension of ``n * m`` laid out
    image by image). Given a bank in place of its generator, row ``i`` of each draw comes from
    generator ``i``, so purifying the batch once gives exactly the random numbers each image
    would get if it were purified alone with its own generator. The evaluation uses this to
    score many independent draws of a randomised defense in one batched pass.

    Args:
        generators: the generators, one per image, in batch order.
    """

    def __init__(self, generators: list[torch.Generator]) -> None:
        if not generators:
            raise ValueError("generators: expected at least one generator")
        self.generators = list(generators)
        self.device = torch.device("cpu")

    def __len__(self) -> int:
        return len(self.generators)

    def draw(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        """Uniform [0, 1) draws of ``shape``, row block ``i`` from generator ``i``.

        Raises:
            ValueError: the leading dimension is not a multiple of the number of generators.
        """
        n = len(self.generators)
        if not shape or shape[0] % n:
            raise ValueError(
                f"GeneratorBank: a draw of shape {tuple(shape)} does not split into {n} images "
                "(the defense does not draw image by image; it must not declare per_sample_draws)"
            )
        part = (shape[0] // n, *shape[1:])
        return torch.cat([torch.rand(part, generator=g, dtype=dtype) for g in self.generators])


RandomSource = torch.Generator | GeneratorBank


def _gen_device(generator: RandomSource | None) -> torch.device:
    return torch.device("cpu") if generator is None else generator.device


def _uniform(shape: tuple[int, ...], generator: RandomSource | None, dtype: torch.dtype) -> Tensor:
    if isinstance(generator, GeneratorBank):
        return generator.draw(shape, dtype)
    return torch.rand(shape, generator=generator, device=_gen_device(generator), dtype=dtype)


def rand(shape: tuple[int, ...], generator: RandomSource | None, device: torch.device) -> Tensor:
    """Uniform [0, 1) float32 draws from ``generator``, returned on ``device``."""
    return _uniform(shape, generator, torch.float32).to(device)


def randint(
    low: int | Tensor,
    high: int | Tensor,
    shape: tuple[int, ...],
    generator: RandomSource | None,
    device: torch.device,
) -> Tensor:
    """Integers uniform in ``[low, high)`` (elementwise bounds allowed), as int64 on ``device``."""
    u = _uniform(shape, generator, torch.float64).to(device)
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
