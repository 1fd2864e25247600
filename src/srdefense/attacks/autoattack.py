"""AutoAttack-style ensembles (Croce & Hein, ICML 2020): the per-sample worst case of several attacks.

``autoattack`` (the standard version) runs APGD-CE, then APGD-T (targeted DLR, 9 target
classes), then Square (5000 queries), each only on the samples that every earlier attack
left robust; a sample is robust only if every attack fails on it. ``autoattack-rand`` (the
version for randomised defenses) runs APGD-CE and then APGD-DLR with EOT over 20 draws.
Defaults are the reference's: 100 iterations and 1 restart per APGD attack.

:meth:`AutoAttack.run` also says which attack fooled each sample, so that a report can tell
when the gradient-free Square succeeds where every gradient attack failed (a sign of gradient
masking). Each component is a registered attack of its own and can be run alone.

The evaluation protocol is AutoAttack's (``autoattack.py``); the code is this package's
attacks composed in a loop, with no global state and no printing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .apgd import APGDCE, APGDDLR, APGDT, REFERENCE, Norm, check_norm
from .apgd import DEFAULT_EPS as _DEFAULT_EPS
from .base import Attack, clip_perturbation
from .losses import fooled
from .registry import register_attack
from .square import Square

CLEAN = "clean"  # the fooled_by entry of a sample already misclassified without an attack


@dataclass(frozen=True)
class EnsembleResult:
    """The outcome of an ensemble, per sample.

    Attributes:
        adv: (N, C, H, W) adversarial images: the first successful attack's output where one
            succeeded, else the first component's output (its highest-loss point).
        robust: (N,) bool, no attack succeeded (and the clean image was classified correctly).
        fooled_by: per sample, the name of the attack that fooled it first, ``"clean"`` when the
            clean image was already misclassified, ``None`` when robust.
    """

    adv: Tensor
    robust: Tensor
    fooled_by: list[str | None]


@register_attack
class AutoAttack(Attack):
    """AutoAttack, standard version: APGD-CE, APGD-T, Square (per-sample worst case).

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations of each APGD run (reference: 100).
        restarts: restarts of APGD-CE and of Square, and runs per target class of APGD-T
            (reference: 1).
        n_target_classes: target classes of APGD-T (reference: 9).
        n_queries: Square's query budget per sample (reference: 5000).
        seed: seed of the random draws when the call gives no generator.
        eot_samples: EOT draws per step, applied to every component.
    """

    name = "autoattack"
    reference = REFERENCE
    supports_targets = False

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        steps: int = 100,
        restarts: int = 1,
        n_target_classes: int = 9,
        n_queries: int = 5000,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        self.distance = check_norm(norm)
        super().__init__(eps=_DEFAULT_EPS[norm] if eps is None else eps, seed=seed, eot_samples=eot_samples)
        self.steps = steps
        self.restarts = restarts
        self.n_target_classes = n_target_classes
        self.n_queries = n_queries
        self.components()  # validates the hyperparameters now, not at the first call

    @property
    def deterministic(self) -> bool:
        """Random starts and a random search: never deterministic."""
        return False

    def _params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.distance,
            "steps": self.steps,
            "restarts": self.restarts,
            "n_target_classes": self.n_target_classes,
            "n_queries": self.n_queries,
            "seed": self.seed,
        }

    def components(self) -> list[Attack]:
        """The attacks run in order (each with ``eot_samples=1``: the ensemble wraps the model once)."""
        common: dict[str, Any] = {"eps": self.eps, "norm": self.distance}
        return [
            APGDCE(steps=self.steps, restarts=self.restarts, **common),
            APGDT(steps=self.steps, restarts=self.restarts, n_target_classes=self.n_target_classes, **common),
            Square(n_queries=self.n_queries, restarts=self.restarts, **common),
        ]

    def run(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> EnsembleResult:
        """Run the ensemble and say, per sample, which attack fooled it.

        Args:
            model: the classifier (see :meth:`Attack.__call__`).
            images: (N, C, H, W) in [0, 1]; not modified.
            labels: (N,) true classes.
            generator: source of the random draws, shared by the components in turn.

        Returns:
            An :class:`EnsembleResult`; ``result.adv`` is what calling the attack returns.
        """
        model, x, y, _, generator = self._prepare(model, images, labels, generator, None)
        n = x.shape[0]
        if n == 0:
            return EnsembleResult(x.clone(), torch.zeros(0, dtype=torch.bool, device=x.device), [])
        eps = self.eps
        assert eps is not None
        with torch.no_grad():
            robust = ~fooled(model(x), y)
        by: list[str | None] = [None if r else CLEAN for r in robust.tolist()]
        adv = x.clone()
        for j, attack in enumerate(self.components()):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            with torch.enable_grad():
                a = attack._run(model, x[idx], y[idx], None, generator).detach()
            a = clip_perturbation(a, x[idx], eps, self.distance)
            with torch.no_grad():
                hit = fooled(model(a), y[idx])
            keep = hit if j > 0 else torch.ones_like(hit)  # robust rows keep the first output
            adv[idx[keep]] = a[keep]
            robust[idx[hit]] = False
            for i in idx[hit].tolist():
                by[i] = attack.name
        return EnsembleResult(self._finish(adv, x), robust, by)

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        raise NotImplementedError  # pragma: no cover - __call__ is overridden

    def __call__(
        self,
        model: nn.Module,
        images: Tensor,
        labels: Tensor,
        *,
        generator: torch.Generator | None = None,
        target_labels: Tensor | None = None,
    ) -> Tensor:
        """Adversarial images of the ensemble (see :meth:`run` for the per-sample details).

        Raises:
            ValueError: ``target_labels`` given (the ensemble is untargeted; APGD-T chooses its
                own targets), or malformed inputs.
        """
        if target_labels is not None:
            raise ValueError(f"{self.name}: has no targeted variant (target_labels must be None)")
        return self.run(model, images, labels, generator=generator).adv


@register_attack
class AutoAttackRand(AutoAttack):
    """AutoAttack for randomised defenses: APGD-CE, then APGD-DLR, with EOT over 20 draws.

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        steps: iterations of each APGD run (reference: 100).
        restarts: restarts of each APGD attack (reference: 1).
        seed: seed of the random draws when the call gives no generator.
        eot_samples: EOT draws per step (reference: 20).
    """

    name = "autoattack-rand"

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        steps: int = 100,
        restarts: int = 1,
        seed: int | None = None,
        eot_samples: int = 20,
    ) -> None:
        super().__init__(
            eps=eps, norm=norm, steps=steps, restarts=restarts, seed=seed, eot_samples=eot_samples
        )

    def _params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.distance,
            "steps": self.steps,
            "restarts": self.restarts,
            "seed": self.seed,
        }

    def config(self) -> dict[str, Any]:
        """As :meth:`Attack.config`, with ``eot_samples`` always named (its default is 20)."""
        return {**super().config(), "eot_samples": self.eot_samples}

    def components(self) -> list[Attack]:
        """APGD-CE and APGD-DLR (the ensemble wraps the model in EOT once)."""
        common: dict[str, Any] = {"eps": self.eps, "norm": self.distance}
        return [
            APGDCE(steps=self.steps, restarts=self.restarts, **common),
            APGDDLR(steps=self.steps, restarts=self.restarts, **common),
        ]
