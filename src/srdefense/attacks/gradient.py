"""The gradient-attack family: one loop, Linf and L2 variants (foolbox 3 design).

:class:`GradientAttack` holds the single loop::

    x_0 = x (+ random start)
    repeat steps times:
        g = grad of the loss at x_t            (cross-entropy; minus CE to the target if targeted)
        g = mu * m + g / mean(|g|); m = g      (only with momentum, MI-FGSM)
        x_{t+1} = clip_[0,1](x + project(x_t + alpha * normalize(g) - x))

The Linf and L2 subclasses override only :meth:`GradientAttack.normalize` (sign / unit L2
norm), :meth:`GradientAttack.project` (clamp / rescale) and the random start (uniform in the
ball). FGSM is one full step (``alpha = eps``) of the Linf loop; I-FGSM, MI-FGSM and PGD
only change the defaults.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import (
    EOT,
    Attack,
    TargetMode,
    _bcast,
    l2_norms,
    project_l2,
    project_linf,
    rand,
    randn,
    value_and_grad,
)
from .losses import margin, objective
from .registry import register_attack


class GradientAttack(Attack):
    """Iterated (projected) gradient ascent on the cross-entropy loss.

    Args:
        eps: perturbation bound in image units (``4 / 255`` for Linf).
        alpha: step size.
        steps: number of gradient steps.
        random_start: start from a uniform draw in the eps-ball (Madry et al. 2018).
        momentum: decay factor ``mu`` of MI-FGSM; 0 disables momentum.
        target: ``None``, ``"random"`` or ``"least-likely"`` (see :class:`Attack`).
        seed: seed for the random draws when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
        early_stop: stop attacking a sample at the first iterate the model misclassifies (for
            a targeted attack: classifies as the target), by a margin of
            :data:`EARLY_STOP_MARGIN` of its largest logit, and return that iterate. The
            forward pass of each step decides it, so it costs nothing, and later steps run on
            the samples still standing only. It never weakens the attack (the last iterate of
            the full loop can be classified correctly again; the returned one is not). Ignored
            for an :class:`EOT` model, whose averaged logits say nothing about a single draw.
    """

    def __init__(
        self,
        *,
        eps: float,
        alpha: float,
        steps: int,
        random_start: bool = False,
        momentum: float = 0.0,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
        early_stop: bool = False,
    ) -> None:
        super().__init__(eps=eps, target=target, seed=seed, eot_samples=eot_samples)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
        if not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha: expected a finite number >= 0, got {alpha}")
        if not math.isfinite(momentum) or momentum < 0:
            raise ValueError(f"momentum: expected a finite number >= 0, got {momentum}")
        self.alpha = float(alpha)
        self.steps = steps
        self.random_start = bool(random_start)
        self.momentum = float(momentum)
        self.early_stop = bool(early_stop)

    @property
    def deterministic(self) -> bool:
        """No random start and no random target."""
        return not self.random_start and super().deterministic

    def _params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "alpha": self.alpha,
            "steps": self.steps,
            "random_start": self.random_start,
            "momentum": self.momentum,
            "target": self.target,
            "seed": self.seed,
            "early_stop": self.early_stop,
        }

    # -- the three things a norm overrides
    def normalize(self, g: Tensor) -> Tensor:
        """Direction of one step for the gradient ``g`` (per sample)."""
        raise NotImplementedError

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Project perturbations onto the eps-ball."""
        raise NotImplementedError

    def random_delta(self, x: Tensor, eps: float, gen: torch.Generator | None) -> Tensor:
        """Uniform draw in the eps-ball, shape of ``x``."""
        raise NotImplementedError

    # -- the loop
    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        eps = self.eps
        assert eps is not None

        early = self.early_stop and not isinstance(model, EOT)
        adv = x.clone()
        if self.random_start:
            adv = (x + self.random_delta(x, eps, gen)).clamp(0, 1)
        velocity: Tensor | None = None
        rows = torch.arange(x.shape[0], device=x.device)  # the samples still attacked
        for _ in range(self.steps):
            if rows.numel() == 0:
                break
            ys = y[rows]
            ts = None if targets is None else targets[rows]

            def fn(m: nn.Module, v: Tensor, ys: Tensor = ys, ts: Tensor | None = ts) -> tuple[Tensor, Tensor]:
                z = m(v)
                return objective("ce", z, ys, ts), z

            def unfooled(z: Tensor, ys: Tensor = ys, ts: Tensor | None = ts) -> Tensor:
                return ~_fooled(z, ys, ts)

            # a batch whose every row this forward pass finds fooled needs no backward pass
            _, logits, g = value_and_grad(model, adv[rows], fn, unfooled if early else None)
            if early:
                go = ~_fooled(logits, ys, ts)
                rows, g = rows[go], g[go]
            if self.momentum > 0:
                # L1 normalisation (Dong et al. 2018, Alg. 1): dividing by mean |g| instead of
                # ||g||_1 scales every term by the constant dimension D, so sign(g) and all
                # iterates are identical; it matches torchattacks' MIFGSM update exactly.
                scale = _bcast(g.abs().mean(dim=tuple(range(1, g.ndim))).clamp_min(1e-30), g)
                g = g / scale
                if velocity is not None:
                    g = g + velocity[rows] * self.momentum
                velocity = torch.zeros_like(x) if velocity is None else velocity
                velocity[rows] = g
            step = adv[rows] + self.alpha * self.normalize(g)
            delta = self.project(step - x[rows], eps)
            adv[rows] = (x[rows] + delta).clamp(0, 1)
        return adv


#: Early stopping counts a sample as fooled only when the true class trails the best other
#: class (or the target leads every other class) by this fraction of the largest logit's
#: magnitude (plus 1e-6), so that the rounding of another batch composition at scoring time
#: cannot turn it back.
EARLY_STOP_MARGIN = 1e-4


def _fooled(logits: Tensor, y: Tensor, targets: Tensor | None) -> Tensor:
    """Rows whose logits are adversarial by :data:`EARLY_STOP_MARGIN`."""
    tol = EARLY_STOP_MARGIN * logits.abs().amax(1) + 1e-6
    if targets is None:
        return margin(logits, y) < -tol
    return margin(logits, targets) > tol


class LinfGradientAttack(GradientAttack):
    """Linf variant: step along ``sign(g)``, project by clamping to ``[-eps, eps]``."""

    distance = "linf"

    def normalize(self, g: Tensor) -> Tensor:
        """``sign(g)``."""
        return g.sign()

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Clamp to ``[-eps, eps]``."""
        return project_linf(delta, eps)

    def random_delta(self, x: Tensor, eps: float, gen: torch.Generator | None) -> Tensor:
        """Uniform in ``[-eps, eps]`` per entry."""
        return (rand(tuple(x.shape), x, gen) * 2 - 1) * eps


class L2GradientAttack(GradientAttack):
    """L2 variant: step along ``g / ||g||_2``, project by rescaling to norm ``eps``."""

    distance = "l2"

    def normalize(self, g: Tensor) -> Tensor:
        """``g / ||g||_2`` per sample."""
        return g / _bcast(l2_norms(g).clamp_min(1e-12), g)

    def project(self, delta: Tensor, eps: float) -> Tensor:
        """Rescale samples with ``||delta||_2 > eps`` onto the sphere."""
        return project_l2(delta, eps)

    def random_delta(self, x: Tensor, eps: float, gen: torch.Generator | None) -> Tensor:
        """Uniform in the L2 ball: Gaussian direction, radius ``eps * U^(1/D)``."""
        d = x[0].numel()
        direction = randn(tuple(x.shape), x, gen)
        direction = direction / _bcast(l2_norms(direction).clamp_min(1e-12), x)
        radius = rand((x.shape[0],), x, gen) ** (1.0 / d) * eps
        return direction * _bcast(radius, x)


def kurakin_steps(eps: float) -> int:
    """Number of I-FGSM iterations of Kurakin et al. (2017): ``min(eps + 4, 1.25 eps)``, eps in 0..255."""
    e = round(eps * 255, 6)
    return max(1, int(min(e + 4, 1.25 * e)))


@register_attack
class FGSM(LinfGradientAttack):
    """Fast Gradient Sign Method: ``x + eps * sign(grad)`` (Goodfellow, Shlens, Szegedy, ICLR 2015).

    One full step of the Linf loop. The targeted variant steps against the gradient of the
    cross-entropy to the target ("fast gradient sign, target class", Kurakin et al.,
    "Adversarial Machine Learning at Scale", ICLR 2017).

    Args:
        eps: Linf bound, e.g. ``4 / 255``.
        target: ``None``, ``"random"`` or ``"least-likely"``.
        seed: seed of the random target when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
    """

    name = "fgsm"
    reference = "Goodfellow, Shlens, Szegedy, 'Explaining and Harnessing Adversarial Examples', ICLR 2015"

    def __init__(
        self,
        *,
        eps: float = 4 / 255,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(eps=eps, alpha=eps, steps=1, target=target, seed=seed, eot_samples=eot_samples)


@register_attack
class IFGSM(LinfGradientAttack):
    """Iterative FGSM / Basic Iterative Method (Kurakin, Goodfellow, Bengio, 2017).

    Defaults from "Adversarial Examples in the Physical World" (ICLR workshop 2017): step
    ``alpha = 1/255`` and ``min(eps*255 + 4, 1.25 * eps*255)`` iterations (5 at ``4/255``).

    Args:
        eps: Linf bound.
        alpha: step size.
        steps: iterations; ``None`` for Kurakin's rule.
        target: ``None``, ``"random"`` or ``"least-likely"`` (iterative least-likely class).
        seed: seed of the random target when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
    """

    name = "ifgsm"
    reference = "Kurakin, Goodfellow, Bengio, 'Adversarial Examples in the Physical World', ICLR-W 2017"

    def __init__(
        self,
        *,
        eps: float = 4 / 255,
        alpha: float = 1 / 255,
        steps: int | None = None,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(
            eps=eps,
            alpha=alpha,
            steps=kurakin_steps(eps) if steps is None else steps,
            target=target,
            seed=seed,
            eot_samples=eot_samples,
        )


BIM = IFGSM


@register_attack
class MIFGSM(LinfGradientAttack):
    """Momentum Iterative FGSM (Dong et al., "Boosting Adversarial Attacks with Momentum", CVPR 2018).

    ``g_{t+1} = mu * g_t + grad / ||grad||_1``; ``x_{t+1} = x_t + alpha * sign(g_{t+1})``.
    Defaults of the paper: ``mu = 1``, 10 iterations, ``alpha = eps / steps``.

    The gradient is divided by its per-sample mean absolute value (as torchattacks'
    ``MIFGSM`` does) rather than by its L1 norm: the two differ by the constant factor
    ``D = C*H*W`` in every term of the momentum sum, so ``sign(g_t)`` and all iterates are
    the same, and the result matches torchattacks to float rounding.

    Args:
        eps: Linf bound.
        alpha: step size; ``None`` for ``eps / steps``.
        steps: iterations.
        momentum: decay factor ``mu``.
        target: ``None``, ``"random"`` or ``"least-likely"``.
        seed: seed of the random target when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
    """

    name = "mifgsm"
    reference = "Dong et al., 'Boosting Adversarial Attacks with Momentum', CVPR 2018"

    def __init__(
        self,
        *,
        eps: float = 4 / 255,
        alpha: float | None = None,
        steps: int = 10,
        momentum: float = 1.0,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(
            eps=eps,
            alpha=eps / steps if alpha is None else alpha,
            steps=steps,
            momentum=momentum,
            target=target,
            seed=seed,
            eot_samples=eot_samples,
        )


@register_attack
class PGD(LinfGradientAttack):
    """Projected Gradient Descent, Linf (Madry et al., ICLR 2018).

    Random start uniform in the ball (as Madry et al.), ``steps`` iterations with step
    ``alpha = 2.5 * eps / steps`` (the rule of Madry et al., which lets a step sequence reach the
    boundary from any start).

    Args:
        eps: Linf bound.
        alpha: step size; ``None`` for ``2.5 * eps / steps``.
        steps: iterations.
        random_start: start from a uniform draw in the ball.
        target: ``None``, ``"random"`` or ``"least-likely"``.
        seed: seed of the random draws when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
        early_stop: return each sample's first adversarial iterate and stop attacking it
            (see :class:`GradientAttack`).
    """

    name = "pgd"
    reference = "Madry et al., 'Towards Deep Learning Models Resistant to Adversarial Attacks', ICLR 2018"

    def __init__(
        self,
        *,
        eps: float = 4 / 255,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
        early_stop: bool = False,
    ) -> None:
        super().__init__(
            eps=eps,
            alpha=2.5 * eps / steps if alpha is None else alpha,
            steps=steps,
            random_start=random_start,
            target=target,
            seed=seed,
            eot_samples=eot_samples,
            early_stop=early_stop,
        )


LinfPGD = PGD


@register_attack
class L2PGD(L2GradientAttack):
    """Projected Gradient Descent, L2 (Madry et al., ICLR 2018).

    Default ``eps = 3.0`` is the ImageNet L2 budget of Engstrom et al.'s ``robustness``
    library for 224x224 images; step ``alpha = 2.5 * eps / steps``, random start uniform in
    the L2 ball.

    Args:
        eps: L2 bound in [0, 1] image units.
        alpha: step size; ``None`` for ``2.5 * eps / steps``.
        steps: iterations.
        random_start: start from a uniform draw in the ball.
        target: ``None``, ``"random"`` or ``"least-likely"``.
        seed: seed of the random draws when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
        early_stop: return each sample's first adversarial iterate and stop attacking it
            (see :class:`GradientAttack`).
    """

    name = "pgd-l2"
    reference = "Madry et al., 'Towards Deep Learning Models Resistant to Adversarial Attacks', ICLR 2018"

    def __init__(
        self,
        *,
        eps: float = 3.0,
        alpha: float | None = None,
        steps: int = 10,
        random_start: bool = True,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
        early_stop: bool = False,
    ) -> None:
        super().__init__(
            eps=eps,
            alpha=2.5 * eps / steps if alpha is None else alpha,
            steps=steps,
            random_start=random_start,
            target=target,
            seed=seed,
            eot_samples=eot_samples,
            early_stop=early_stop,
        )
