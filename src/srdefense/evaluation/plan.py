"""The plan of an evaluation: everything resolved once, before the first batch.

:func:`build_plan` turns the arguments of :func:`~srdefense.evaluation.evaluate` (names or
objects for the classifier, defenses, attacks and settings) into a :class:`Plan`: the modules,
the attack configurations per setting, the number of EOT samples and evaluation draws per
defense, and the ``config`` block of ``results.json`` with its run id. The batch loop
(:mod:`.runner`) only reads the plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._spec import parse_spec
from ..attacks import create_attack
from ..purification.base import Purifier
from ..purification.precision import PRECISIONS, set_precision
from ..purification.registry import create_defense
from .eps import format_eps
from .errors import ConfigError
from .threats import (
    AttackTarget,
    ThreatModel,
    create_threat_model,
    defense_fingerprint,
    state_dict_sha256,
    threat_model_names,
)

DEFAULT_EOT_SAMPLES = 20
"""EOT samples per gradient for a randomised defense (AutoAttack 'rand', DiffPure)."""
DEFAULT_EVAL_DRAWS = 10
"""Independent draws of a randomised defense when scoring."""


@dataclass
class AttackRun:
    """One attack configuration (an attack at one eps).

    Attributes:
        key: unique column label, e.g. ``fgsm@4/255`` or ``deepfool`` (the full spec, e.g.
            ``pgd:steps=50@4/255``, only where two configurations would share a label).
        name: attack name.
        eps: perturbation budget (``None`` for minimal-norm attacks).
        attack: the callable attack object.
        spec: the spec it was made from, if any.
    """

    key: str
    name: str
    eps: float | None
    attack: Any
    spec: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-able description for the ``config`` block and the cache key."""
        cfg_fn = getattr(self.attack, "config", None)
        cfg = cfg_fn() if callable(cfg_fn) else {"repr": repr(self.attack)}
        return {
            "key": self.key,
            "name": self.name,
            "eps": self.eps,
            "norm": getattr(self.attack, "norm", None),
            "spec": self.spec,
            "deterministic": bool(getattr(self.attack, "deterministic", True)),
            "config": json.loads(json.dumps(cfg, default=str)),
        }


# ---------------------------------------------------------------------------- resolution
def build_attack_runs(attacks: Iterable[Any], eps: Sequence[float] | None = None) -> list[AttackRun]:
    """Expand attack names (or ``name:key=value`` specs) and objects into configurations.

    A name of an Linf attack becomes one configuration per eps; an L2 attack keeps its own
    budget (give it in the spec, ``pgd-l2:eps=0.5``); a minimal-norm attack (``eps`` ``None`` when
    created without one, e.g. DeepFool, C&W) becomes a single configuration with eps
    ``None``; an explicit ``eps=`` parameter in the spec is kept as is. Attack objects are
    used as given.

    Raises:
        ConfigError: unknown attack name (listing the known ones) or bad parameters.
    """
    eps_list = list(eps or [])
    runs: list[AttackRun] = []
    for item in attacks:
        if isinstance(item, str):
            name, params = parse_spec(item, "attack")
            try:
                if "eps" in params:
                    objs = [create_attack(name, **params)]
                else:
                    probe = create_attack(name, **params)
                    distance = getattr(probe, "distance", getattr(probe, "norm", None))
                    if getattr(probe, "eps", None) is None or not eps_list or distance != "linf":
                        objs = [probe]
                    else:
                        objs = [create_attack(name, eps=e, **params) for e in eps_list]
            except KeyError as exc:
                raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"attack {item!r}: {exc}") from None
            for obj in objs:
                runs.append(_make_run(obj, spec=item))
        else:
            runs.append(_make_run(item, spec=None))
    # keys: "name@eps" (or "name"); the full spec only where two configurations would collide
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.key] = counts.get(r.key, 0) + 1
    for r in runs:
        if counts[r.key] > 1 and r.spec is not None and ":" in r.spec:
            r.key = _key(r.spec, r.eps)
    seen: dict[str, int] = {}
    for r in runs:
        k = seen.get(r.key, 0)
        seen[r.key] = k + 1
        if k:
            r.key = f"{r.key}#{k + 1}"
    return runs


def _key(base: str, eps: float | None) -> str:
    return base if eps is None else f"{base}@{format_eps(eps)}"


def _make_run(obj: Any, spec: str | None) -> AttackRun:
    name = str(getattr(obj, "name", type(obj).__name__))
    e = getattr(obj, "eps", None)
    e = None if e is None else float(e)
    return AttackRun(key=_key(name, e), name=name, eps=e, attack=obj, spec=spec)


def build_defenses(defenses: Mapping[str, Purifier | str] | Iterable[Purifier | str]) -> dict[str, Purifier]:
    """Resolve defenses: a mapping name -> purifier or spec, or a list of specs/purifiers.

    Raises:
        ConfigError: unknown defense (listing the known ones) or bad parameters.
    """
    items: list[tuple[str, Purifier | str]]
    if isinstance(defenses, Mapping):
        items = list(defenses.items())
    else:
        items = []
        for d in defenses:
            items.append((d if isinstance(d, str) else _purifier_name(d), d))
    out: dict[str, Purifier] = {}
    for name, d in items:
        if name in out:
            raise ConfigError(f"defense {name!r} given twice")
        if isinstance(d, str):
            try:
                d = create_defense(d)
            except KeyError as exc:
                raise ConfigError(exc.args[0] if exc.args else str(exc)) from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"defense {d!r}: {exc}") from None
        if not isinstance(d, Purifier):
            raise TypeError(f"defense {name!r}: expected a Purifier or a spec string, got {type(d).__name__}")
        out[name] = d
    if not out:
        raise ConfigError("defenses: expected at least one defense")
    return out


def _purifier_name(p: Any) -> str:
    return str(getattr(p, "name", None) or type(p).__name__.lower())


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.loads(json.dumps(obj, default=str))


def classifier_fingerprint(model: nn.Module) -> dict[str, Any]:
    """Identity of a classifier: its name and ``cfg`` (when it has one), class, parameter hash.

    The sha256 over the state dict makes the adversarial-example cache safe against changed
    weights under the same name.
    """
    cfg = getattr(model, "cfg", None)
    name = getattr(cfg, "name", None) or getattr(model, "name", None) or type(model).__name__
    return {
        "name": str(name),
        "class": f"{type(model).__module__}.{type(model).__qualname__}",
        "cfg": _jsonable(cfg) if cfg is not None else None,
        "params_sha256": state_dict_sha256(model),
        "weights_sha256": getattr(model, "weights_sha256", None),
    }


def _versions() -> dict[str, str]:
    return {
        "srdefense": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _seed_of(*parts: Any) -> int:
    return int(_digest(parts)[:15], 16)


# ---------------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """An evaluation, resolved.

    Attributes:
        classifier: the model (on ``device``).
        defenses: name -> purifier (on ``device``).
        settings: threat-model names, in run order.
        runs: setting -> the attack configurations run in that setting.
        resolution: ``"purified"`` or ``"native"``.
        seed: seed of every draw.
        batch_size: samples per batch window.
        device: where to compute.
        eot: defense -> EOT samples per gradient in the adaptive settings.
        draws: defense -> evaluation draws when scoring.
        card: whether to run the gradient-masking report card.
        config: the ``config`` block of ``results.json`` (``run_id`` included).
        precision: super-resolution arithmetic of the scoring passes (set on the defenses).
        attack_precision: super-resolution arithmetic of white-box attack gradients.
    """

    classifier: nn.Module
    defenses: dict[str, Purifier]
    settings: list[str]
    runs: dict[str, list[AttackRun]]
    resolution: str
    seed: int
    batch_size: int
    device: torch.device
    eot: dict[str, int]
    draws: dict[str, int]
    card: bool
    config: dict[str, Any]
    precision: str = "fp32"
    attack_precision: str = "fp32"
    _threats: dict[str, ThreatModel] = field(default_factory=dict, repr=False)
    _targets: dict[tuple[str, str], AttackTarget] = field(default_factory=dict, repr=False)

    @property
    def run_id(self) -> str:
        """Identity of the run (hash of everything that changes the numbers)."""
        return str(self.config["run_id"])

    def all_runs(self) -> list[tuple[str, AttackRun]]:
        """``(setting, run)`` pairs in run order."""
        return [(s, r) for s in self.settings for r in self.runs[s]]

    def target(self, setting: str, defense: str) -> AttackTarget:
        """The attacked module for ``defense`` in ``setting`` (built once, then reused)."""
        key = (setting, defense)
        if key not in self._targets:
            tm = self._threats.setdefault(setting, create_threat_model(setting))
            self._targets[key] = tm.target(
                self.defenses[defense],
                self.classifier,
                resolution=self.resolution,  # type: ignore[arg-type]
                eot_samples=self.eot[defense],
            )
        return self._targets[key]

    def adaptive(self, setting: str) -> bool:
        """Whether the attacker knows the defense in ``setting``."""
        tm = self._threats.setdefault(setting, create_threat_model(setting))
        return bool(tm.adaptive)


def build_plan(
    classifier: nn.Module,
    defenses: Mapping[str, Purifier | str] | Iterable[Purifier | str],
    attacks: Iterable[Any],
    *,
    data_ids: list[str] | None,
    data_n: int | None,
    eps: Sequence[float] | None = (4 / 255,),
    settings: Sequence[str] = ("gray-box",),
    adaptive_attacks: Iterable[Any] | None = None,
    resolution: str = "purified",
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    seed: int = 0,
    eot_samples: int | None = None,
    eval_draws: int | None = None,
    card: bool = True,
    precision: str = "fp32",
    attack_precision: str = "fp32",
) -> Plan:
    """Resolve everything an evaluation needs; see :func:`~srdefense.evaluation.evaluate`.

    Raises:
        ConfigError: unknown names (listing the known ones) or bad values.
    """
    settings = list(dict.fromkeys(settings))
    known = threat_model_names()
    if not settings:
        raise ConfigError("setting: expected at least one threat model")
    for s in settings:
        if s not in known:
            raise ConfigError(f"setting: unknown threat model {s!r}; known: {', '.join(known)}")
    if resolution not in ("purified", "native"):
        raise ConfigError(f"resolution: expected 'purified' or 'native', got {resolution!r}")
    for name, v in (("batch_size", batch_size), ("eot_samples", eot_samples), ("eval_draws", eval_draws)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ConfigError(f"{name}: expected an integer >= 1, got {v!r}")
    for name, choice in (("precision", precision), ("attack_precision", attack_precision)):
        if choice not in PRECISIONS:
            raise ConfigError(f"{name}: expected one of {', '.join(PRECISIONS)}, got {choice!r}")
    dev = torch.device(device)
    classifier = classifier.to(dev)
    purifiers = {k: set_precision(p.to(dev), precision) for k, p in build_defenses(defenses).items()}
    attacks = list(attacks)
    base_runs = build_attack_runs(attacks, eps)
    if not base_runs:
        raise ConfigError("attacks: expected at least one attack")
    adaptive_runs = (
        build_attack_runs(list(adaptive_attacks), eps) if adaptive_attacks is not None else base_runs
    )
    if not adaptive_runs:
        raise ConfigError("adaptive_attacks: expected at least one attack")
    by_key = {r.key: r for r in base_runs}
    for i, r in enumerate(adaptive_runs):
        same = by_key.get(r.key)
        if same is None or same is r:
            continue
        if same.describe()["config"] == r.describe()["config"]:
            adaptive_runs[i] = same  # one configuration, one column key
        else:
            r.key = f"{r.key}#adaptive"
    plan_threats = {s: create_threat_model(s) for s in settings}
    runs = {s: (adaptive_runs if plan_threats[s].adaptive else base_runs) for s in settings}
    eot = {k: (eot_samples or DEFAULT_EOT_SAMPLES) if p.randomized else 1 for k, p in purifiers.items()}
    draws = {k: (eval_draws or DEFAULT_EVAL_DRAWS) if p.randomized else 1 for k, p in purifiers.items()}
    config: dict[str, Any] = {
        "settings": settings,
        "setting": settings[0],
        "resolution": resolution,
        "seed": seed,
        "batch_size": batch_size,
        "classifier": classifier_fingerprint(classifier),
        "defenses": [
            {
                "name": k,
                "repr": repr(p),
                "class": f"{type(p).__module__}.{type(p).__qualname__}",
                "differentiable": bool(p.differentiable),
                "randomized": bool(p.randomized),
                "scale": int(p.scale),
                "eot_samples": eot[k],
                "eval_draws": draws[k],
                "fingerprint": defense_fingerprint(p),
            }
            for k, p in purifiers.items()
        ],
        "attacks": _unique_runs(runs, settings),
        "attacks_by_setting": {s: [r.key for r in runs[s]] for s in settings},
        "card": bool(card),
        "precision": precision,
        "attack_precision": attack_precision,
        "data": {
            "n": len(data_ids) if data_ids is not None else data_n,
            "ids_sha256": _digest(data_ids) if data_ids is not None else None,
        },
    }
    config["run_id"] = _digest(config)[:16]
    config["device"] = str(dev)
    config["versions"] = _versions()
    return Plan(
        classifier=classifier,
        defenses=purifiers,
        settings=settings,
        runs=runs,
        resolution=resolution,
        seed=seed,
        batch_size=batch_size,
        device=dev,
        eot=eot,
        draws=draws,
        card=bool(card),
        config=config,
        precision=precision,
        attack_precision=attack_precision,
        _threats=plan_threats,
    )


def _unique_runs(runs: dict[str, list[AttackRun]], settings: list[str]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for s in settings:
        for r in runs[s]:
            if r.key not in out:
                out[r.key] = r.describe()
    return list(out.values())
