"""The service's compute side: batch keys, jobs and the :class:`Engine` that runs whole batches.

Only the worker thread calls the engine; :mod:`.service` checks, decodes, queues and answers.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..attacks import create_attack
from ..purification.registry import create_defense
from .config import ServeConfig
from .errors import ServiceError


# -- batch keys: jobs with equal keys share a batch
class PurifyKey(NamedTuple):
    """Purify jobs of one defense and one image size."""

    defense: str
    resolution: str | None
    shape: tuple[int, int]


class ClassifyKey(NamedTuple):
    """Classify jobs of one defense (images already at the classifier's size)."""

    defense: str
    resolution: str | None


class AttackKey(NamedTuple):
    """Attack jobs of one defense and one attack setting."""

    defense: str
    resolution: str | None
    method: str
    eps: float
    steps: int
    seed: int


@dataclass(frozen=True)
class _ClassifyJob:
    image: Tensor
    keep_images: bool


@dataclass(frozen=True)
class _AttackJob:
    image: Tensor
    label: int | None


def kind_of(key: Hashable) -> str:
    """The metrics label of a batch key."""
    return {PurifyKey: "purify", ClassifyKey: "classify", AttackKey: "attack"}.get(type(key), "other")


def quantize_within(adv: Tensor, x: Tensor, eps: float) -> Tensor:
    """Round ``adv`` to 8-bit levels without leaving the Linf ball of ``x`` (``x`` on the 8-bit grid).

    The perturbation, in 1/255 steps, is rounded and clamped to ``floor(eps * 255)`` steps,
    so the returned image is exactly what its PNG holds and still within ``eps`` of ``x``.
    """
    k = math.floor(eps * 255 + 1e-6)
    steps = ((adv - x) * 255).round().clamp(-k, k)
    return (x + steps / 255).clamp(0, 1)


def _grid(x: Tensor) -> Tensor:
    return (x.clamp(0, 1) * 255).round() / 255


class Engine:
    """The classifier and the loaded defenses; computes batches (on the worker thread only).

    Args:
        classifier: an srdefense classifier (``.cfg`` attached), already on ``device``.
        config: the service settings.
        device: where the model runs.
    """

    def __init__(self, classifier: nn.Module, config: ServeConfig, device: torch.device) -> None:
        self.classifier = classifier
        self.config = config
        self.device = device
        self._defenses: OrderedDict[tuple[str, str | None], nn.Module] = OrderedDict()

    def defense(self, spec: str, resolution: str | None) -> nn.Module:
        """The defense ``spec`` (with ``resolution`` when given), loaded once and kept (LRU)."""
        key = (spec, resolution)
        if key in self._defenses:
            self._defenses.move_to_end(key)
            return self._defenses[key]
        overrides = {} if resolution is None else {"resolution": resolution}
        try:
            purifier = create_defense(spec, **overrides).to(self.device).eval()
        except KeyError as exc:
            raise ServiceError(422, "unknown_defense", exc.args[0] if exc.args else str(exc)) from None
        except (TypeError, ValueError, FileNotFoundError) as exc:
            raise ServiceError(422, "bad_defense", f"defense {spec!r}: {exc}") from None
        self._defenses[key] = purifier
        while len(self._defenses) > self.config.max_defenses:
            self._defenses.popitem(last=False)
        return purifier

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _timed(self, fn: Any, *args: Any) -> tuple[Any, float]:
        self._sync()
        t0 = time.perf_counter()
        out = fn(*args)
        self._sync()
        return out, (time.perf_counter() - t0) * 1000

    def run(self, key: Hashable, payloads: list[Any]) -> Sequence[Any]:
        """Compute one batch (the :class:`BatchWorker`'s batch function)."""
        started = time.monotonic()
        if isinstance(key, PurifyKey):
            out = self._purify(key, payloads)
        elif isinstance(key, ClassifyKey):
            out = self._classify(key, payloads)
        elif isinstance(key, AttackKey):
            out = self._attack(key, payloads)
        else:
            raise TypeError(f"unknown batch key {key!r}")
        for r in out:
            r["started"] = started
            r["batch_size"] = len(payloads)
        return out

    def _purify(self, key: PurifyKey, images: list[Tensor]) -> list[dict[str, Any]]:
        purifier = self.defense(key.defense, key.resolution)
        x = torch.stack(images).to(self.device)
        with torch.no_grad():
            y, ms = self._timed(purifier, x)
        y = y.float().cpu()
        return [{"image": y[i], "purify_ms": ms} for i in range(len(images))]

    def _classify(self, key: ClassifyKey, jobs: list[_ClassifyJob]) -> list[dict[str, Any]]:
        purifier = self.defense(key.defense, key.resolution)
        x = torch.stack([j.image for j in jobs]).to(self.device)
        with torch.no_grad():
            plain, t_plain = self._timed(self.classifier, x)
            purified, t_purify = self._timed(purifier, x)
            defended, t_def = self._timed(self.classifier, purified)
        p_plain = plain.float().softmax(-1).cpu()
        p_def = defended.float().softmax(-1).cpu()
        purified = purified.float().cpu()
        return [
            {
                "plain": p_plain[i],
                "defended": p_def[i],
                "input_size": tuple(x.shape[-2:]),
                "purified_size": tuple(purified.shape[-2:]),
                "purified": purified[i] if j.keep_images else None,
                "classify_ms": t_plain,
                "purify_ms": t_purify,
                "classify_defended_ms": t_def,
            }
            for i, j in enumerate(jobs)
        ]

    def _attack(self, key: AttackKey, jobs: list[_AttackJob]) -> list[dict[str, Any]]:
        purifier = self.defense(key.defense, key.resolution)
        x = torch.stack([j.image for j in jobs]).to(self.device)
        n = x.shape[0]
        with torch.no_grad():
            plain_clean = self.classifier(x).float()
        labels = torch.tensor(
            [int(plain_clean[i].argmax()) if j.label is None else j.label for i, j in enumerate(jobs)],
            device=self.device,
        )
        params: dict[str, Any] = {"seed": key.seed}
        if key.method == "pgd":
            params["steps"] = key.steps
        attack = create_attack(key.method, eps=key.eps, **params)
        adv, t_attack = self._timed(attack, self.classifier, x, labels)
        adv = quantize_within(adv, x, key.eps)
        with torch.no_grad():
            plain_adv = self.classifier(adv).float()
            both = torch.cat([x, adv])
            purified, t_purify = self._timed(purifier, both)
            defended, t_def = self._timed(self.classifier, purified)
        defended = defended.float()
        p = {
            "clean_plain": plain_clean.softmax(-1).cpu(),
            "adv_plain": plain_adv.softmax(-1).cpu(),
            "clean_defended": defended[:n].softmax(-1).cpu(),
            "adv_defended": defended[n:].softmax(-1).cpu(),
        }
        x_cpu, adv_cpu = x.cpu(), adv.cpu()
        return [
            {
                **{k: v[i] for k, v in p.items()},
                "label": int(labels[i]),
                "image": x_cpu[i],
                "adversarial": adv_cpu[i],
                "attack_ms": t_attack,
                "purify_ms": t_purify,
                "classify_defended_ms": t_def,
            }
            for i in range(n)
        ]
