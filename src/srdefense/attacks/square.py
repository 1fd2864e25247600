"""Square Attack (Andriushchenko, Croce, Flammarion, Hein, ECCV 2020): score-based, no gradients.

A random search that only reads the model's logits. Each query changes one random square
window of the current best perturbation; the change is kept when it raises the objective
(the negative margin ``max_{i != y} z_i - z_y`` by default) or makes the sample adversarial.
The side of the window shrinks with the query count by the reference schedule: the share
``p`` of the image it covers starts at ``p_init = 0.8`` and is halved after 10, 50, 200, 500,
1000, 2000, 4000, 6000 and 8000 queries (``rescale_schedule`` stretches these points to the
query budget, as ``n_queries / 10000``).

- Linf: start from vertical stripes of ``+-eps``; a window is set to ``x +- eps`` with one
  random sign per colour channel (redrawn, up to a few times, when it would not change the
  window, as in the authors' code).
- L2: start from a 5x5 grid of "pseudo-Gaussian" blocks with random signs; a query moves the
  mass of a second random window into the first, as a pair of opposite pseudo-Gaussian bumps,
  and rescales the perturbation to norm ``eps``.

Windows and signs are drawn per sample (the paper's algorithm; AutoAttack and torchattacks
share one window across the batch). Only still-robust samples are queried. The model is
only ever called under ``torch.no_grad()``: the attack needs no gradient and works on models
that have none. Written here after the paper and the authors' code (read, not copied), for
the per-sample draws, the seeded generator and the per-sample query budget.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .apgd import DEFAULT_EPS, Norm, check_norm
from .base import Attack, TargetMode, _bcast, l2_norms, rand
from .losses import margin, objective
from .registry import register_attack

REFERENCE = (
    "Andriushchenko, Croce, Flammarion, Hein, 'Square Attack: a query-efficient black-box "
    "adversarial attack via random search', ECCV 2020"
)
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_schedule(it: int, p_init: float, n_queries: int | None = None) -> float:
    """Share of the image a window covers at iteration ``it`` (the reference schedule).

    Args:
        it: the iteration (0-based).
        p_init: the initial share.
        n_queries: when given, the schedule is rescaled to this budget (``it * 10000 / n_queries``).

    Returns:
        ``p_init / 2**j`` where ``j`` counts the schedule points strictly below ``it``.
    """
    if n_queries is not None:
        it = int(it / n_queries * 10000)
    return p_init / 2 ** sum(it > s for s in _SCHEDULE)


def _randint(high: Tensor | int, n: int, like: Tensor, gen: torch.Generator | None) -> Tensor:
    """Uniform integers in ``[0, high]`` (inclusive), one per sample."""
    u = rand((n,), like, gen).double()
    return (u * (high + 1)).long().clamp_max(high)


def _signs(shape: tuple[int, ...], like: Tensor, gen: torch.Generator | None) -> Tensor:
    return torch.where(rand(shape, like, gen) < 0.5, -1.0, 1.0).to(like.dtype)


def _window_mask(top: Tensor, left: Tensor, s: int, h: int, w: int) -> Tensor:
    """(n, 1, h, w) bool mask of the s x s windows at per-sample (top, left)."""
    r = torch.arange(h, device=top.device)
    c = torch.arange(w, device=top.device)
    rows = (r[None] >= top[:, None]) & (r[None] < top[:, None] + s)
    cols = (c[None] >= left[:, None]) & (c[None] < left[:, None] + s)
    return (rows[:, :, None] & cols[:, None, :])[:, None]


def _get_window(t: Tensor, top: Tensor, left: Tensor, s: int) -> Tensor:
    """(n, C, s, s) contents of the windows."""
    n = t.shape[0]
    ar = torch.arange(s, device=t.device)
    ni = torch.arange(n, device=t.device)[:, None, None]
    hh = (top[:, None] + ar)[:, :, None]
    ww = (left[:, None] + ar)[:, None, :]
    return t[ni, :, hh, ww].permute(0, 3, 1, 2)


def _set_window(t: Tensor, top: Tensor, left: Tensor, s: int, values: Tensor) -> None:
    n = t.shape[0]
    ar = torch.arange(s, device=t.device)
    ni = torch.arange(n, device=t.device)[:, None, None]
    hh = (top[:, None] + ar)[:, :, None]
    ww = (left[:, None] + ar)[:, None, :]
    t[ni, :, hh, ww] = values.permute(0, 2, 3, 1)


def _bump(a: int, b: int, like: Tensor) -> Tensor:
    """An a x b pseudo-Gaussian block of unit L2 norm (nested rectangles, as in the paper).

    The value at Chebyshev distance ``d`` from the centre is ``sum_{k >= d} 1 / (k + 1)^2``.
    """
    i = torch.arange(a, device=like.device, dtype=torch.float64)[:, None]
    j = torch.arange(b, device=like.device, dtype=torch.float64)[None, :]
    d = torch.maximum((i - a // 2).abs(), (j - b // 2).abs()).long()
    n_rings = max(a // 2 + 1, b // 2 + 1)
    weights = 1.0 / torch.arange(1, n_rings + 1, dtype=torch.float64, device=like.device) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)  # tail[d] = sum_{k >= d} weights[k]
    v = tail[d]
    return (v / v.norm()).to(like.dtype)


def _eta(s: int, like: Tensor) -> Tensor:
    """The s x s window pattern of the L2 attack: two bumps of opposite sign, unit norm."""
    top, bottom = s // 2, s - s // 2
    parts = [_bump(top, s, like)] if top > 0 else []
    v = torch.cat([*parts, -_bump(bottom, s, like)], dim=0)
    return v / v.norm()


@register_attack
class Square(Attack):
    """Square Attack, Linf and L2 (score-based: only logits, never gradients).

    Args:
        eps: the bound; ``None`` for ``4 / 255`` (Linf) or ``3.0`` (L2).
        norm: ``"linf"`` or ``"l2"``.
        n_queries: model evaluations per sample and restart, the first (initial) one included
            (reference: 5000).
        p_init: initial share of the image changed by a query (reference: 0.8).
        restarts: runs from fresh random starts on the still-robust samples (reference: 1).
        loss: objective maximised: ``"margin"`` (reference) or ``"ce"``.
        rescale_schedule: stretch the p schedule to the query budget (AutoAttack's standard
            version runs Square with ``False``).
        target: ``None``, ``"random"`` or ``"least-likely"``.
        seed: seed of the random draws when the call gives no generator.
        eot_samples: logits averaged over this many forward passes (randomised models).
    """

    name = "square"
    reference = REFERENCE

    def __init__(
        self,
        *,
        eps: float | None = None,
        norm: Norm = "linf",
        n_queries: int = 5000,
        p_init: float = 0.8,
        restarts: int = 1,
        loss: str = "margin",
        rescale_schedule: bool = False,
        target: TargetMode | None = None,
        seed: int | None = None,
        eot_samples: int = 1,
    ) -> None:
        self.distance = check_norm(norm)
        super().__init__(
            eps=DEFAULT_EPS[norm] if eps is None else eps, target=target, seed=seed, eot_samples=eot_samples
        )
        for nm, v in (("n_queries", n_queries), ("restarts", restarts)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{nm}: expected an int >= 1, got {v!r}")
        if not (math.isfinite(p_init) and 0 < p_init <= 1):
            raise ValueError(f"p_init: expected a number in (0, 1], got {p_init}")
        if loss not in ("margin", "ce"):
            raise ValueError(f"loss: expected 'margin' or 'ce', got {loss!r}")
        self.n_queries = n_queries
        self.p_init = float(p_init)
        self.restarts = restarts
        self.loss = loss
        self.rescale_schedule = bool(rescale_schedule)

    @property
    def deterministic(self) -> bool:
        """A random search: never deterministic."""
        return False

    def _params(self) -> dict[str, Any]:
        return {
            "eps": self.eps,
            "norm": self.distance,
            "n_queries": self.n_queries,
            "p_init": self.p_init,
            "restarts": self.restarts,
            "loss": self.loss,
            "rescale_schedule": self.rescale_schedule,
            "target": self.target,
            "seed": self.seed,
        }

    def _p(self, it: int) -> float:
        return p_schedule(it, self.p_init, self.n_queries if self.rescale_schedule else None)

    # ------------------------------------------------------------------ scoring
    def _score(self, model: nn.Module, v: Tensor, y: Tensor, t: Tensor | None) -> tuple[Tensor, Tensor]:
        """(objective to maximise, margin: > 0 while the sample is not yet adversarial)."""
        with torch.no_grad():
            z = model(v)
        m = margin(z, y) if t is None else -margin(z, t)
        return objective(self.loss, z, y, t), m

    # ------------------------------------------------------------------ the search
    def _run(
        self, model: nn.Module, x: Tensor, y: Tensor, targets: Tensor | None, gen: torch.Generator | None
    ) -> Tensor:
        _, m0 = self._score(model, x, y, targets)
        robust = m0 > 0
        out = x.clone()
        out_obj = torch.full((x.shape[0],), -math.inf, device=x.device, dtype=x.dtype)
        for _ in range(self.restarts):
            idx = robust.nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            t = None if targets is None else targets[idx]
            best, obj, m = self._search(model, x[idx], y[idx], t, gen)
            done = m <= 0
            keep = done | (obj > out_obj[idx])
            out[idx] = torch.where(_bcast(keep, best), best, out[idx])
            out_obj[idx] = torch.where(keep, obj, out_obj[idx])
            robust[idx] = ~done
        return out

    def _search(
        self, model: nn.Module, x: Tensor, y: Tensor, t: Tensor | None, gen: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        if self.distance == "linf":
            return self._search_linf(model, x, y, t, gen)
        return self._search_l2(model, x, y, t, gen)

    def _accept(
        self,
        model: nn.Module,
        idx: Tensor,
        cand: Tensor,
        x_best: Tensor,
        obj: Tensor,
        m: Tensor,
        y: Tensor,
        t: Tensor | None,
    ) -> None:
        """Score the candidates of rows ``idx`` and keep the better ones (in place)."""
        o_new, m_new = self._score(model, cand, y[idx], None if t is None else t[idx])
        improved = o_new > obj[idx]
        take = improved | (m_new <= 0)
        obj[idx] = torch.where(improved, o_new, obj[idx])
        m[idx] = torch.where(take, m_new, m[idx])
        x_best[idx] = torch.where(_bcast(take, cand), cand, x_best[idx])

    def _search_linf(
        self, model: nn.Module, x: Tensor, y: Tensor, t: Tensor | None, gen: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        eps = self.eps
        assert eps is not None
        n, c, h, w = x.shape
        x_best = (x + eps * _signs((n, c, 1, w), x, gen)).clamp(0, 1)
        obj, m = self._score(model, x_best, y, t)
        for it in range(self.n_queries - 1):
            idx = (m > 0).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            k = idx.numel()
            xc, xb = x[idx], x_best[idx]
            s = min(max(int(round(math.sqrt(self._p(it) * h * w))), 1), h, w)
            top = _randint(h - s, k, x, gen)
            left = _randint(w - s, k, x, gen)
            mask = _window_mask(top, left, s, h, w)
            colour = _signs((k, c, 1, 1), x, gen)
            for _ in range(10):  # redraw colours that would leave the window as it is
                cand = torch.where(mask, (xc + eps * colour).clamp(0, 1), xb)
                same = ((cand - xb).abs() < 1e-7).flatten(1).all(1)
                if not same.any():
                    break
                colour = torch.where(_bcast(same, colour), _signs((k, c, 1, 1), x, gen), colour)
            self._accept(model, idx, cand, x_best, obj, m, y, t)
        return x_best, obj, m

    def _search_l2(
        self, model: nn.Module, x: Tensor, y: Tensor, t: Tensor | None, gen: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        eps = self.eps
        assert eps is not None
        n, c, h, w = x.shape

        def to_sphere(d: Tensor) -> Tensor:
            return d / _bcast(l2_norms(d) + 1e-12, d) * eps

        # initial perturbation: a 5 x 5 grid of pseudo-Gaussian blocks, random sign per channel
        s0 = max(min(h, w) // 5, 1)
        delta = torch.zeros_like(x)
        block = _bump(s0, s0, x)
        off_h, off_w = (h - 5 * s0) // 2, (w - 5 * s0) // 2
        for bi in range(min(5, h // s0)):
            for bj in range(min(5, w // s0)):
                r, q = off_h + bi * s0, off_w + bj * s0
                delta[:, :, r : r + s0, q : q + s0] += block * _signs((n, c, 1, 1), x, gen)
        x_best = (x + to_sphere(delta)).clamp(0, 1)
        obj, m = self._score(model, x_best, y, t)
        for it in range(self.n_queries - 1):
            idx = (m > 0).nonzero().squeeze(1)
            if idx.numel() == 0:
                break
            k = idx.numel()
            xc = x[idx]
            d = x_best[idx] - xc
            s = max(int(round(math.sqrt(self._p(it) * h * w))), 3)
            if s % 2 == 0:
                s += 1
            s = min(s, h, w)
            top, left = _randint(h - s, k, x, gen), _randint(w - s, k, x, gen)
            top2, left2 = _randint(h - s, k, x, gen), _randint(w - s, k, x, gen)
            mask1 = _window_mask(top, left, s, h, w)
            mask2 = _window_mask(top2, left2, s, h, w)
            old = _get_window(d, top, left, s)  # (k, c, s, s)
            old_norm = old.flatten(2).norm(dim=2)[:, :, None, None]
            norm_img = l2_norms(d)
            norm_windows = l2_norms(d * (mask1 | mask2).to(d.dtype))
            eta = _eta(s, x)
            flip = rand((k,), x, gen) < 0.5
            pattern = torch.where(_bcast(flip, eta[None, None]), eta.t()[None, None], eta[None, None])
            new = pattern * _signs((k, c, 1, 1), x, gen) + old / (old_norm + 1e-12)
            budget = ((eps**2 - norm_img**2).clamp_min(0) / c + norm_windows**2).sqrt()
            new = new / (new.flatten(2).norm(dim=2)[:, :, None, None] + 1e-12) * _bcast(budget, new)
            d = torch.where(mask2, torch.zeros_like(d), d)
            _set_window(d, top, left, s, new)
            cand = (xc + to_sphere(d)).clamp(0, 1)
            self._accept(model, idx, cand, x_best, obj, m, y, t)
        return x_best, obj, m
