"""DeepFool (Moosavi-Dezfooli, Fawzi, Frossard, CVPR 2016), Linf and L2, batched.

Each iteration linearises the classifier around the current point and takes the smallest
step that crosses the nearest linearised decision boundary among the ``candidates`` most
likely classes; the accumulated perturbation is scaled by ``1 + overshoot``. Samples stop
individually as soon as they are misclassified. Only still-correct samples are forwarded.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import Attack, _bcast, _rows
from .registry import register_attack


class DeepFool(Attack):
    """DeepFool base: the loop; subclasses define the step for their norm.

    Args:
        steps: maximum number of iterations (50 in the reference code).
        candidates: number of most likely classes considered, the true class included (10 in
            the reference code; keeps the cost at ``candidates - 1`` backward passes per
            iteration with 1000 classes).
        overshoot: the accumulated perturbation is multiplied by ``1 + overshoot`` (0.02).
        eps: optional bound; ``None`` (default) gives the minimal-norm attack. When set, the
            final perturbation is projected onto the eps-ball (foolbox's clipping of
            minimisation attacks).
        eot_samples: EOT draws per step for randomised models (see :class:`Attack`); the
            quantities of DeepFool are linear in the logits, so averaging them is exact EOT.
    """

    supports_targets = False

    def __init__(
        self,
        *,
        steps: int = 50,
        candidates: int = 10,
        overshoot: float = 0.02,
        eps: float | None = None,
        eot_samples: int = 1,
    ) -> None:
        super().__init__(eps=eps, eot_samples=eot_samples)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps: expected an int >= 1, got {steps!r}")
        if not isinstance(candidates, int) or candidates < 2:
            raise ValueError(f"candidates: expected an int >= 2, got {candidates!r}")
        if not math.isfinite(overshoot) or overshoot < 0:
            raise ValueError(f"overshoot: expected a finite number >= 0, got {overshoot}")
        self.steps = steps
        self.candidates = candidates
        self.overshoot = float(overshoot)

    def _params(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "candidates": self.candidates,
            "overshoot": self.overshoot,
            "eps": self.eps,
        }

    def distances_and_steps(self, f: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """Distance to a linearised boundary and the step that reaches it.

        Args:
            f: logit differences ``z_k - z_label`` (n,), negative while correctly classified.
            w: their gradients (n, C, H, W).

        Returns:
            ``(distance (n,), step (n, C, H, W))``; the step excludes the ``1e-4`` margin.
        """
        raise NotImplementedError

    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        with torch.no_grad():
            logits = model(x)
        k = min(self.candidates, logits.shape[1])
        masked = logits.detach().clone()
        masked.scatter_(1, y[:, None], -math.inf)
        classes = torch.cat([y[:, None], masked.topk(k - 1, dim=1).indices], dim=1)

        adv = x.clone()
        p_total = torch.zeros_like(x)
        active = logits.argmax(1) == y
        for _ in range(self.steps):
            idx = active.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            xa = adv[idx].detach().requires_grad_(True)
            z = model(xa)
            still = z.argmax(1) == y[idx]
            active[idx] = still
            if not still.any():
                break
            cls = classes[idx]
            z0 = z.gather(1, cls[:, :1]).squeeze(1)
            best_d: Tensor | None = None
            best_step = torch.zeros_like(xa)
            for j in range(1, k):
                f = z.gather(1, cls[:, j : j + 1]).squeeze(1) - z0
                (w,) = torch.autograd.grad(f.sum(), xa, retain_graph=j < k - 1)
                d, step = self.distances_and_steps(f.detach(), w)
                if best_d is None:
                    best_d, best_step = d, step
                else:
                    better = d < best_d
                    best_d = torch.where(better, d, best_d)
                    best_step = torch.where(_bcast(better, step), step, best_step)
            assert best_d is not None
            # rows that are already adversarial do not move
            best_step = best_step * _bcast(still.to(best_step.dtype), best_step)
            p_total[idx] = p_total[idx] + best_step
            adv[idx] = (x[idx] + (1 + self.overshoot) * p_total[idx]).clamp(0, 1)
        return adv


@register_attack
class LinfDeepFool(DeepFool):
    """DeepFool for the Linf norm: step ``(|f| / ||w||_1 + 1e-4) * sign(w)``."""

    name = "deepfool"
    distance = "linf"
    reference = "Moosavi-Dezfooli, Fawzi, Frossard, 'DeepFool', CVPR 2016"

    def distances_and_steps(self, f: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """Linf distance ``|f| / ||w||_1`` (dual norm) and step along ``sign(w)``."""
        d = f.abs() / (_rows(w).abs().sum(1) + 1e-8)
        return d, _bcast(d + 1e-4, w) * w.sign()


@register_attack
class L2DeepFool(DeepFool):
    """DeepFool for the L2 norm (the original): step ``(|f| / ||w||_2 + 1e-4) * w / ||w||_2``."""

    name = "deepfool-l2"
    distance = "l2"
    reference = "Moosavi-Dezfooli, Fawzi, Frossard, 'DeepFool', CVPR 2016"

    def distances_and_steps(self, f: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        """L2 distance ``|f| / ||w||_2`` and step along ``w / ||w||_2``."""
        n = _rows(w).norm(dim=1) + 1e-8
        d = f.abs() / n
        return d, _bcast((d + 1e-4) / n, w) * w
