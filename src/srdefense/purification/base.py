"""Base class of every purifier, and the explicit gradient contract.

A purifier maps float images in [0, 1], NCHW, to float images in [0, 1], N x C x (s*H) x (s*W)
where ``s`` is its ``scale``. It is an ``nn.Module``, so ``nn.Sequential(purifier, classifier)``
is a defended model that any attack can take.

Differentiability is declared, never accidental: a stage either has a true gradient
(``differentiable = True``), or its forward is wrapped so that ``backward`` raises
:class:`NoGradientError` naming the stage and its BPDA stand-in. :class:`BPDA` replaces that
backward by the gradient of the stand-in (identity unless the stage names another).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .._random import RandomSource
from .._validation import check_image_batch


class NoGradientError(RuntimeError):
    """Raised when a gradient is asked for through a stage that has none."""


class _RaiseInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, y: Tensor, name: str) -> Tensor:
        ctx.stage_name = name
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, None, None]:
        raise NoGradientError(
            f"purifier stage {ctx.stage_name!r} has no true gradient; wrap it in "
            f"srdefense.BPDA(...) to attack it with its backward stand-in (BPDA), "
            f"or attack the classifier alone (gray-box)"
        )


class _StraightThrough(torch.autograd.Function):
    """Forward: the exact output ``y``; backward: the gradient of ``surrogate_out`` wrt ``x``."""

    @staticmethod
    def forward(ctx: Any, y: Tensor, surrogate_out: Tensor) -> Tensor:
        return y.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:
        return None, grad


class Purifier(nn.Module):
    """Base class for input purifiers.

    Subclasses implement :meth:`purify` and set the class attributes below.

    Attributes:
        differentiable: whether :meth:`purify` has a true gradient. A non-differentiable
            stage raises :class:`NoGradientError` in ``backward`` unless wrapped in :class:`BPDA`.
        randomized: whether the output depends on random draws (then ``purify`` takes the
            module's ``generator``, so a draw can be replayed).
        per_sample_draws: whether every random draw is image-major (row ``i`` of a draw belongs
            to image ``i``), so that a :class:`~srdefense.purification.randomized.GeneratorBank`
            in place of the generator gives each image exactly the draws it would get alone.
        scale: integer factor by which height and width grow (1 for most defenses, 2 for SR).
        reference: the paper the stage comes from (shown by ``srdefense list defenses``).
    """

    differentiable: bool = True
    randomized: bool = False
    per_sample_draws: bool = False
    scale: int = 1
    reference: str = ""

    def __init__(self) -> None:
        super().__init__()
        self.generator: RandomSource | None = None

    def purify(self, x: Tensor) -> Tensor:
        """Purify a validated batch ``x`` (N, 3, H, W) in [0, 1]."""
        raise NotImplementedError

    def bpda_surrogate(self, x: Tensor) -> Tensor:
        """Differentiable stand-in used by :class:`BPDA` for the backward pass.

        The default is the identity for ``scale == 1`` and bicubic upsampling otherwise.
        """
        if self.scale == 1:
            return x
        return nn.functional.interpolate(
            x, scale_factor=self.scale, mode="bicubic", align_corners=False
        ).clamp(0, 1)

    @property
    def bpda_name(self) -> str:
        """Name of the BPDA stand-in."""
        return "identity" if self.scale == 1 else f"bicubic x{self.scale}"

    def forward(self, x: Tensor) -> Tensor:
        """Validate ``x`` and purify it; see :meth:`purify`."""
        check_image_batch(x, "images")
        if self.differentiable or not (torch.is_grad_enabled() and x.requires_grad):
            return self.purify(x)
        with torch.no_grad():
            y = self.purify(x)
        return _RaiseInBackward.apply(x, y, self.extra_name())

    def extra_name(self) -> str:
        """Short name used in error messages."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class Identity(Purifier):
    """No defense: returns its input unchanged."""

    reference = "no defense"

    def purify(self, x: Tensor) -> Tensor:
        """Return ``x``."""
        return x


class Lambda(Purifier):
    """Wrap a function ``f(x) -> x'`` as a purifier (declare its gradient and scale)."""

    def __init__(
        self,
        fn: Callable[[Tensor], Tensor],
        *,
        differentiable: bool = True,
        scale: int = 1,
        name: str = "lambda",
    ) -> None:
        super().__init__()
        self.fn = fn
        self.differentiable = differentiable
        self.scale = scale
        self.name = name

    def purify(self, x: Tensor) -> Tensor:
        """Apply the wrapped function."""
        return self.fn(x)

    def extra_name(self) -> str:
        """The given name."""
        return self.name


class BPDA(Purifier):
    """Backward Pass Differentiable Approximation (Athalye et al., ICML 2018).

    The forward pass is the wrapped purifier's exact output; the backward pass is the gradient
    of ``surrogate`` (default: the purifier's own :meth:`Purifier.bpda_surrogate`, the identity
    for same-size stages). Wrapping a differentiable purifier with itself as surrogate gives
    the true gradient.

    Args:
        purifier: the stage to attack.
        surrogate: differentiable stand-in ``f(x) -> x'`` with the same output shape.
    """

    differentiable = True
    reference = "Athalye, Carlini, Wagner, ICML 2018 (BPDA)"

    def __init__(self, purifier: Purifier, surrogate: Callable[[Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self.purifier = purifier
        self.surrogate = surrogate
        self.scale = purifier.scale
        self.randomized = purifier.randomized
        self.per_sample_draws = purifier.per_sample_draws

    def purify(self, x: Tensor) -> Tensor:
        """Exact forward, surrogate backward."""
        with torch.no_grad():
            y = self.purifier(x)
        if not (torch.is_grad_enabled() and x.requires_grad):
            return y
        s = self.surrogate(x) if self.surrogate is not None else self.purifier.bpda_surrogate(x)
        if s.shape != y.shape:
            raise ValueError(
                f"BPDA surrogate output shape {tuple(s.shape)} differs from the purifier's {tuple(y.shape)}"
            )
        return _StraightThrough.apply(y, s)

    def extra_repr(self) -> str:
        """Constructor arguments shown by ``repr``."""
        name = "custom" if self.surrogate is not None else self.purifier.bpda_name
        return f"{self.purifier!r}, surrogate={name}"
