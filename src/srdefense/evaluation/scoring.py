"""Attacking and scoring one batch: seeded randomness, the attack memo and cache, predictions.

Randomness is derived from the seed and the sample ids (never from a running generator) and
drawn from CPU generators whatever the device, so the numbers of a batch depend only on the
samples in it (their dataset positions) and the seed: never on loop order, on the other
batches, or on which rank of a sharded run evaluated it.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .._random import GeneratorBank
from ..attacks.base import EOT
from ..purification.base import Purifier
from ..purification.compose import Defended
from ..purification.precision import stage_precision
from .cache import CACHE_VERSION, AdversarialCache
from .plan import AttackRun, Plan, _digest, _seed_of
from .threats import AttackTarget

__all__ = ["Attacker", "score", "seeded"]


# ---------------------------------------------------------------------------- randomness
def _purifiers_in(module: nn.Module) -> list[Purifier]:
    return [m for m in module.modules() if isinstance(m, Purifier)]


@contextmanager
def seeded(module: nn.Module, seed: int | Sequence[int], device: torch.device) -> Iterator[None]:
    """Every purifier inside ``module`` draws from a CPU generator seeded with ``seed``.

    With a sequence of seeds (one per image of the batch), each purifier gets a
    :class:`~srdefense._random.GeneratorBank` instead: a defense that declares
    ``per_sample_draws`` then gives image ``i`` exactly the draws of ``seed[i]`` alone.
    Torch's global generators are forked and seeded too (for stages that draw from them; with a
    sequence, from its first seed), and the purifiers' own generators are restored afterwards.
    """
    purifiers = _purifiers_in(module)
    saved = [(m, m.generator) for m in purifiers]
    seeds = [seed] if isinstance(seed, int) else list(seed)
    for k, m in enumerate(purifiers):
        gens = [torch.Generator().manual_seed((s + 7919 * k) % (2**63)) for s in seeds]
        m.generator = gens[0] if isinstance(seed, int) else GeneratorBank(gens)
    try:
        with torch.random.fork_rng(devices=[] if device.type == "cpu" else [device]):
            torch.manual_seed(seeds[0] % (2**63))
            yield
    finally:
        for m, g in saved:
            m.generator = g


def batched_draws(module: nn.Module) -> bool:
    """Whether every randomised purifier in ``module`` draws image by image (``per_sample_draws``)."""
    return all(m.per_sample_draws for m in _purifiers_in(module) if m.randomized)


# ---------------------------------------------------------------------------- attack and score
class Attacker:
    """Crafts (or reads from the cache) adversarial examples for one batch, each key once."""

    def __init__(self, plan: Plan, cache: AdversarialCache, timing: dict[str, float]) -> None:
        self.plan = plan
        self.cache = cache
        self.timing = timing
        self.fingerprint = plan.config["classifier"]
        self.memo: dict[str, Tensor] = {}
        self.window = -1

    def enter(self, window: int) -> None:
        """Start a batch window (the examples of the previous one are forgotten)."""
        if window != self.window:
            self.memo = {}
            self.window = window

    def key(self, target: AttackTarget, run: AttackRun, x: Tensor, y: Tensor, ids: list[str]) -> str:
        """The cache key of an attack configuration on a batch and attacked module."""
        desc = run.describe()
        return _digest(
            {
                "v": CACHE_VERSION,
                "classifier": self.fingerprint,
                "target": target.fingerprint,
                "attack": {k: desc[k] for k in ("name", "eps", "norm", "config")},
                "ids": ids,
                "pixels": hashlib.sha256(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest(),
                "labels": y.tolist(),
                "seed": self.plan.seed,
            }
        )

    def __call__(
        self, target: AttackTarget, run: AttackRun, x: Tensor, y: Tensor, ids: list[str]
    ) -> tuple[Tensor, bool]:
        """The adversarial examples of ``run`` on ``target``, and whether they were stored."""
        key = self.key(target, run, x, y, ids)
        if key in self.memo:
            return self.memo[key], True
        hit = self.cache.get(key, x, run.eps, getattr(run.attack, "norm", None))
        if hit is not None:
            self.cache.hits += 1
            self.memo[key] = hit
            return hit, True
        self.cache.misses += 1
        desc = run.describe()
        t0 = time.perf_counter()
        gen = torch.Generator().manual_seed(
            _seed_of("attack", self.plan.seed, desc["config"], target.fingerprint, ids)
        )
        draws = _seed_of("attack-draws", self.plan.seed, desc["config"], target.fingerprint, ids)
        module = target.module
        if getattr(run.attack, "eot_samples", 1) > 1 and isinstance(module, EOT):
            module = module.model  # the attack brings its own EOT (e.g. autoattack-rand)
        with seeded(module, draws, x.device), stage_precision(module, self.plan.attack_precision):
            adv = run.attack(module, x, y, generator=gen)
        self.timing["attacks"] = self.timing.get("attacks", 0.0) + time.perf_counter() - t0
        adv = adv.detach().to(dtype=x.dtype)
        if adv.shape != x.shape:
            raise RuntimeError(
                f"attack {run.key}: returned shape {tuple(adv.shape)}, expected {tuple(x.shape)}"
            )
        self.cache.put(key, adv)
        self.memo[key] = adv
        return adv, False


def score(
    plan: Plan, defense: str, scorer: nn.Module, x: Tensor, ids: list[str], kind: str
) -> tuple[list[list[int]], Tensor]:
    """Predictions through ``scorer`` (a :class:`Defended`), one list of draws per sample.

    A deterministic defense is scored once, batched. A randomised one is scored with
    ``plan.draws[defense]`` independent draws per sample, each seeded by (seed, defense, kind,
    sample id, draw): the draws do not depend on the batch or on the other defenses. When every
    randomised stage draws image by image (``per_sample_draws``), each draw is one batched
    pass with a generator bank; otherwise each sample and draw is a pass of its own.

    Returns:
        The predictions and the purified images of the first draw (for image quality).
    """
    assert isinstance(scorer, Defended)
    k = plan.draws[defense]
    with torch.no_grad():
        if k == 1 and not plan.defenses[defense].randomized:
            with seeded(scorer, _seed_of("eval", plan.seed, defense, kind, ids), x.device):
                logits, purified = scorer.purify_and_classify(x)
            return [[int(p)] for p in logits.argmax(1).tolist()], purified
        if batched_draws(scorer):
            # one batched pass per draw; each image's draws are those of its own seeds
            rows: list[list[int]] = [[] for _ in ids]
            purified0 = x.new_zeros(0)
            for d in range(k):
                seeds = [_seed_of("eval", plan.seed, defense, kind, sid, d) for sid in ids]
                with seeded(scorer, seeds, x.device):
                    logits, purified = scorer.purify_and_classify(x)
                for row, p in zip(rows, logits.argmax(1).tolist(), strict=True):
                    row.append(int(p))
                if d == 0:
                    purified0 = purified
            return rows, purified0
        preds: list[list[int]] = []
        first: list[Tensor] = []
        for i, sid in enumerate(ids):
            row = []
            for d in range(k):
                with seeded(scorer, _seed_of("eval", plan.seed, defense, kind, sid, d), x.device):
                    logits, purified = scorer.purify_and_classify(x[i : i + 1])
                row.append(int(logits.argmax(1)))
                if d == 0:
                    first.append(purified)
            preds.append(row)
        shapes = {tuple(t.shape) for t in first}
        return preds, (torch.cat(first) if len(shapes) == 1 else first[0].new_zeros(0))
