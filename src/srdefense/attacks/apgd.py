"""Auto-PGD (Croce & Hein, ICML 2020): APGD-CE, APGD-DLR and the targeted APGD-T.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020.

One run, from a random point of the eps-sphere (Linf: ``eps * t / ||t||_inf`` for uniform
``t``; L2: ``eps * g / ||g||_2`` for Gaussian ``g``)::

    z      = P(x_k + eta * direction(grad f(x_k)))           (sign / unit-L2 step)
    x_k+1  = P(x_k + a (z - x_k) + (1 - a) (x_k - x_k-1))     (a = 1 at k = 0, then momentum 0.75)

with step ``eta = 2 eps`` at first. At checkpoints ``w_j`` (the first after ``0.22 N``
iterations, then intervals shrinking by ``0.03 N`` down to ``0.06 N``) the step of a sample is
halved, and the sample restarts from its best point, when

1. the loss increased in at most ``rho`` of the iterations since the last checkpoint (each
   iterate against the previous one, the first against the start, as in the paper; the
   reference code compares the very first iterate with 0 instead), or
2. its step was not halved at the last checkpoint and its best loss has not improved since.

Every iterate is scored: the highest-loss point and a misclassified point (the latest found)
are tracked per sample. An attack returns the misclassified point where one was found, else
the highest-loss point, never simply the last iterate. Restarts and the target classes of
APGD-T run only on the samples still robust, as the reference does.

The loop is written here, not taken from AutoAttack or torchattacks: both keep state on the
attack object, seed torch's global generator, print, use batch-dependent numpy indexing and
(torchattacks, L2) the first sample's step size for the whole batch. This file follows the
paper and reads the reference (``autopgd_base.py``) for the checkpoint schedule and the
defaults: 100 iterations, ``rho = 0.75``, 1 restart, 9 target classes for APGD-T.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .base import (
    Attack,
    TargetMode,
    _bcast,
    l2_norms,
    linf_norms,
    project_l2,
    project_linf,
    rand,
    randn,
    value_and_grad,
)
from .losses import fooled, objective
from .registry import register_attack

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")
DEFAULT_EPS = {"linf": 4 / 255, "l2": 3.0}
REFERENCE = (
    "Croce, Hein, 'Reliable evaluation of adversarial robustness with an ensemble of diverse "
    "parameter-free attacks', ICML 2020"
)


def check_norm(norm: str) -> str:
    """Validate a norm name (``"linf"`` or ``"l2"``) and return it."""
    if norm not in NORMS:
        raise ValueError(f"norm: expected 'linf' or 'l2', got {norm!r}")
    return norm


def checkpoints(steps: int) -> list[int]:
    """The iteration counts after which APGD checks its step size (reference schedule).

    The first check comes after ``max(int(0.22 N), 1)`` iterations; each following interval is
    ``max(int(0.03 N), 1)`` shorter than the previous one, down to ``max(int(0.06 N), 1)``.

    Args:
        steps: the number of iterations ``N``.

    Returns:
        Increasing iteration counts ``<= steps`` (``[22, 41, 57, 70, 80, 87, 93, 99]`` for 100).
    """
    k = max(int(0.22 * steps), 1)
    k_min = max(int(0.06 * steps), 1)
    decr = max(int(0.03 * steps), 1)
    out: list[int] = []
    at = k
    while at <= steps:
        out.append(at)
        k = max(k - decr, k_min)
        at += k
    return out


@dataclass(frozen=True)
class APGDRun:
    """What one APGD run found, per sample.

    Attributes:
        adv: a misclassified point where one was found (``fooled``), else ``best``.
        fooled: (N,) bool, an iterate was adversarial.
        best: the highest-loss point.
        best_loss: (N,) its loss.
        last: the last iterate.
        last_loss: (N,) its loss.
        step_size: (N,) the final step sizes.
    """

    adv: Tensor
    fooled: Tensor
    best: Tensor
    best_loss: Tensor
    last: Tensor
    last_loss: Tensor
    step_size: Tensor


class APGD(Attack):
    """Auto-PGD with a chosen loss (the base of ``apgd-ce`` and ``apgd-dlr``).

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (Difference of Logits Ratio).
        steps: iterations per run (reference: 100).
        restarts: runs from fresh random starts, each on the samples still robust (reference: 1).
        rho: a checkpoint halves the step when the loss rose in at most this share of the
            iterations since the previous one (reference: 0.75).
        momentum: weight ``a`` of the new step against the previous one (paper: 0.75).
        target: ``None``, ``"random"`` or ``"least-likely"``; targeted runs maximise ``-CE`` or
            the targeted DLR to the target and succeed when it is reached.
        seed: seed of the random starts when the call gives no generator.
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`).
    """

    name = "apgd"
    reference = REFERENCE

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        loss: str = "ce",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        self.distance = check_norm(norm)
        super().__init__(
            eps=DEFAULT_EPS[norm] if eps is None else eps, target=target, seed=seed, eot_samples=eot_samples
        )
        if loss not in ("ce", "dlr"):
            raise ValueError(f"loss: expected 'ce' or 'dlr', got {loss!r}")
        for nm, v in (("steps", steps), ("restarts", restarts)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{nm}: expected an int >= 1, got {v!r}")
        if not (math.isfinite(rho) and 0 < rho <= 1):
            raise ValueError(f"rho: expected a number in (0, 1], got {rho}")
        if not (math.isfinite(momentum) and 0 < momentum <= 1):
            raise ValueError(f"momentum: expected a number in (0, 1], got {momentum}")
        self.loss = loss
        self.steps = steps
        self.restarts = restarts
        self.rho = float(rho)
        self.momentum = float(momentum)

    @property
    def deterministic(self) -> bool:
        """APGD starts at random: never deterministic."""
        return False

    def _params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.distance,
            "loss": self.loss,
            "steps": self.steps,
            "restarts": self.restarts,
            "rho": self.rho,
            "momentum": self.momentum,
            "target": self.target,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ norm-specific parts
    def _direction(self, g: Tensor) -> Tensor:
        if self.distance == "linf":
            return g.sign()
        return g / _bcast(l2_norms(g) + 1e-12, g)

    def _project(self, v: Tensor, x: Tensor) -> Tensor:
        eps = self.eps
        assert eps is not None
        if self.distance == "linf":
            return (x + project_linf(v - x, eps)).clamp(0, 1)
        return (x + project_l2(v - x, eps)).clamp(0, 1)

    def _start(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        eps = self.eps
        assert eps is not None
        if self.distance == "linf":
            t = rand(tuple(x.shape), x, gen) * 2 - 1
            t = t / _bcast(linf_norms(t).clamp_min(1e-12), t)
        else:
            t = randn(tuple(x.shape), x, gen)
            t = t / _bcast(l2_norms(t) + 1e-12, t)
        return (x + eps * t).clamp(0, 1)

    # ------------------------------------------------------------------ one run
    def run_once(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        loss_targets: Tensor | None = None,
        success_targets: Tensor | None = None,
        loss: str | None = None,
        generator: torch.Generator | None = None,
    ) -> APGDRun:
        """One APGD run from a random start (no input checks, no restarts, no EOT wrapping).

        Args:
            model: the classifier (an :class:`EOT` wrapper is honoured).
            x: images (N, C, H, W) in [0, 1].
            y: true classes (N,).
            loss_targets: classes of the targeted loss, or ``None`` for the untargeted loss.
            success_targets: a sample counts as fooled when classified as this class, or, when
                ``None``, when misclassified.
            loss: ``"ce"`` or ``"dlr"``; ``None`` for the attack's own.
            generator: source of the random start.

        Returns:
            An :class:`APGDRun`.
        """
        loss_name = self.loss if loss is None else loss
        eps = self.eps
        assert eps is not None
        n = x.shape[0]

        def fn(m: nn.Module, v: Tensor) -> tuple[Tensor, Tensor]:
            z = m(v)
            return objective(loss_name, z, y, loss_targets), z

        def rows(mask: Tensor, a: Tensor, b: Tensor) -> Tensor:
            return torch.where(_bcast(mask, a), a, b)

        x_adv = self._start(x, generator)
        cur_loss, logits, grad = value_and_grad(model, x_adv, fn)
        is_adv = fooled(logits, y, success_targets)
        found = is_adv.clone()
        adv = rows(is_adv, x_adv, x)
        best, best_loss, grad_best = x_adv, cur_loss, grad
        step = torch.full((n,), 2.0 * eps, device=x.device, dtype=x.dtype)

        checks = set(checkpoints(self.steps))
        last_check = 0
        n_rises = torch.zeros(n, device=x.device)
        best_at_check = best_loss
        reduced_at_check = torch.ones(n, dtype=torch.bool, device=x.device)
        x_prev = x_adv
        for i in range(self.steps):
            a = self.momentum if i > 0 else 1.0
            z = self._project(x_adv + _bcast(step, x) * self._direction(grad), x)
            nxt = self._project(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev), x)
            x_prev, x_adv = x_adv, nxt
            prev_loss = cur_loss
            cur_loss, logits, grad = value_and_grad(model, x_adv, fn)
            is_adv = fooled(logits, y, success_targets)
            found |= is_adv
            adv = rows(is_adv, x_adv, adv)
            n_rises += (cur_loss > prev_loss).float()
            better = cur_loss > best_loss
            best = rows(better, x_adv, best)
            grad_best = rows(better, grad, grad_best)
            best_loss = torch.where(better, cur_loss, best_loss)
            if i + 1 in checks:
                k = i + 1 - last_check
                oscillating = n_rises <= self.rho * k
                stalled = ~reduced_at_check & (best_at_check >= best_loss)
                reduce = oscillating | stalled
                reduced_at_check, best_at_check = reduce, best_loss
                step = torch.where(reduce, step / 2, step)
                x_adv = rows(reduce, best, x_adv)
                grad = rows(reduce, grad_best, grad)
                n_rises = torch.zeros_like(n_rises)
                last_check = i + 1
        last, last_loss = x_adv, cur_loss
        return APGDRun(
            adv=rows(found, adv, best),
            fooled=found,
            best=best,
            best_loss=best_loss,
            last=last,
            last_loss=last_loss,
            step_size=step,
        )

    # ------------------------------------------------------------------ restarts
    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        with torch.no_grad():
            robust = ~fooled(model(x), y, targets)
        out = x.clone()
        out_loss = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=x.dtype)
        for _ in range(self.restarts):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            t = None if targets is None else targets[idx]
            run = self.run_once(model, x[idx], y[idx], loss_targets=t, success_targets=t, generator=gen)
            self._merge(out, out_loss, robust, idx, run)
        return out

    @staticmethod
    def _merge(out: Tensor, out_loss: Tensor, robust: Tensor, idx: Tensor, run: APGDRun) -> None:
        """Fold one run on rows ``idx`` into the running result (in place on the local tensors)."""
        keep_best = ~run.fooled & (run.best_loss > out_loss[idx])
        new = torch.where(_bcast(run.fooled, run.adv), run.adv, out[idx])
        new = torch.where(_bcast(keep_best, new), run.best, new)
        out[idx] = new
        out_loss[idx] = torch.where(keep_best, run.best_loss, out_loss[idx])
        robust[idx] = robust[idx] & ~run.fooled


@register_attack
class APGDCE(APGD):
    """APGD on the cross-entropy loss (AutoAttack's first attack).

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations per run (reference: 100).
        restarts: runs from fresh random starts on the still-robust samples (reference: 1).
        rho: the checkpoint threshold (reference: 0.75).
        momentum: the momentum weight (paper: 0.75).
        target: ``None``, ``"random"`` or ``"least-likely"``.
        seed: seed of the random starts when the call gives no generator.
        eot_samples: EOT draws per step for randomised models.
    """

    name = "apgd-ce"

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            loss="ce",
            steps=steps,
            restarts=restarts,
            rho=rho,
            momentum=momentum,
            target=target,
            seed=seed,
            eot_samples=eot_samples,
        )

    def _params(self) -> dict[str, Any]:
        p = super()._params()
        del p["loss"]
        return p


@register_attack
class APGDDLR(APGD):
    """APGD on the Difference of Logits Ratio loss (shift- and scale-invariant).

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations per run (reference: 100).
        restarts: runs from fresh random starts on the still-robust samples (reference: 1).
        rho: the checkpoint threshold (reference: 0.75).
        momentum: the momentum weight (paper: 0.75).
        target: ``None``, ``"random"`` or ``"least-likely"`` (targeted DLR; needs 4 classes).
        seed: seed of the random starts when the call gives no generator.
        eot_samples: EOT draws per step for randomised models.
    """

    name = "apgd-dlr"

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        steps: int = 100,
        restarts: int = 1,
        rho: float = 0.75,
        momentum: float = 0.75,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            loss="dlr",
            steps=steps,
            restarts=restarts,
            rho=rho,
            momentum=momentum,
            target=target,
            seed=seed,
            eot_samples=eot_samples,
        )

    def _params(self) -> dict[str, Any]:
        p = super()._params()
        del p["loss"]
        return p


@register_attack
class APGDT(APGD):
    """APGD-T: targeted DLR towards each of the highest-ranked wrong classes in turn.

    For each of the ``n_target_classes`` classes with the largest clean logits other than the
    true one (best first), ``restarts`` runs maximise the targeted DLR loss towards it on the
    samples still robust; a sample is fooled as soon as it is misclassified (any wrong class).

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations per run (reference: 100).
        restarts: runs per target class (reference: 1).
        n_target_classes: number of target classes (reference: 9; at most ``K - 1``).
        rho: the checkpoint threshold (reference: 0.75).
        momentum: the momentum weight (paper: 0.75).
        seed: seed of the random starts when the call gives no generator.
        eot_samples: EOT draws per step for randomised models.
    """

    name = "apgd-t"
    supports_targets = False

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        rho: float = 0.75,
        momentum: float = 0.75,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(
            eps=eps,
            norm=norm,
            loss="dlr",
            steps=steps,
            restarts=restarts,
            rho=rho,
            momentum=momentum,
            seed=seed,
            eot_samples=eot_samples,
        )
        if (
            isinstance(n_target_classes, bool)
            or not isinstance(n_target_classes, int)
            or n_target_classes < 1
        ):
            raise ValueError(f"n_target_classes: expected an int >= 1, got {n_target_classes!r}")
        self.n_target_classes = n_target_classes

    def _params(self) -> dict[str, Any]:
        p = super()._params()
        del p["loss"], p["target"]
        p["n_target_classes"] = self.n_target_classes
        return p

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        with torch.no_grad():
            logits = model(x)
        k = logits.shape[1]
        if k < 4:
            raise ValueError(f"{self.name}: the targeted DLR loss needs at least 4 classes, got {k}")
        robust = ~fooled(logits, y)
        ranked = logits.detach().scatter(1, y[:, None], -math.inf).argsort(dim=1, descending=True)
        out = x.clone()
        out_loss = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=x.dtype)
        for j in range(min(self.n_target_classes, k - 1)):
            for _ in range(self.restarts):
                idx = robust.nonzero().squeeze(1)
                if idx.numel() == 0:
                    return out
                run = self.run_once(model, x[idx], y[idx], loss_targets=ranked[idx, j], generator=gen)
                # losses towards different targets are not comparable: keep the latest best point
                out_loss[idx] = -math.inf
                self._merge(out, out_loss, robust, idx, run)
        return out
