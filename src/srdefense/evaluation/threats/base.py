"""The threat-model contract, its registry and the helpers every threat model shares."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..._registry import Registry
from ...attacks.base import EOT
from ...purification.base import BPDA, Identity, Purifier
from ...purification.compose import Compose, Defended, ResolutionPolicy


@dataclass
class AttackTarget:
    """What one threat model hands the attack for one defense.

    Attributes:
        module: the model the attack differentiates (or queries), EOT-wrapped where the
            defense is randomised and ``eot_samples > 1``.
        scorer: the model that classifies the purified adversarial image (the attacked model
            without the EOT average, forward-identical to the defended model).
        fingerprint: identity of ``module`` for the cache key (classifier excluded).
        eot_samples: forward passes averaged per gradient (1: no EOT).
        purifier: the purifier inside ``module`` whose generators draw during the attack
            (``None`` when the attack sees the classifier alone).
    """

    module: nn.Module
    scorer: nn.Module
    fingerprint: dict[str, Any]
    eot_samples: int = 1
    purifier: Purifier | None = None


@dataclass(frozen=True)
class ThreatModelInfo:
    """Registry entry of a threat model (what ``srdefense list`` shows)."""

    name: str
    description: str
    reference: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class ThreatModel:
    """Base class: subclasses set ``name`` and ``description`` and implement :meth:`target`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    adaptive: ClassVar[bool] = True
    """Whether the attacker knows the defense (every setting but gray-box)."""

    def target(
        self,
        purifier: Purifier,
        classifier: nn.Module,
        *,
        resolution: ResolutionPolicy = "purified",
        eot_samples: int = 1,
    ) -> AttackTarget:
        """The module to attack for ``purifier`` in front of ``classifier``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_REGISTRY: Registry[type[ThreatModel]] = Registry("threat model (setting)")


def register_threat_model(cls: type[ThreatModel]) -> type[ThreatModel]:
    """Class decorator: register a threat model under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a threat model needs a name")
    _REGISTRY.add(cls.name, cls)
    return cls


def create_threat_model(name: str) -> ThreatModel:
    """A threat model by name.

    Raises:
        KeyError: unknown name; the message lists the known ones.
    """
    return _REGISTRY.get(name)()


def threat_model_names() -> list[str]:
    """Registered settings, in the order gray-box, white-box, bpda, then the others."""
    order = {"gray-box": 0, "white-box": 1, "bpda": 2}
    return sorted(_REGISTRY.names(), key=lambda n: (order.get(n, 9), n))


def list_threat_models() -> list[ThreatModelInfo]:
    """Info objects of the registered settings."""
    out = []
    for n in threat_model_names():
        cls = _REGISTRY.get(n)
        out.append(ThreatModelInfo(n, cls.description, cls.reference, {"adaptive": cls.adaptive}))
    return out


# ---------------------------------------------------------------------------- helpers
def is_identity(purifier: Purifier) -> bool:
    """Whether the defense is no defense at all (then every setting attacks the classifier)."""
    return type(purifier) is Identity


def with_stand_ins(purifier: Purifier) -> Purifier:
    """The purifier with each stage that has no true gradient wrapped in :class:`BPDA`.

    Stages with a true gradient are kept as they are; a :class:`Compose` is rebuilt stage by
    stage (sharing the stage modules), so a stand-in replaces the backward pass of that stage
    only, never the whole pipeline.
    """
    if purifier.differentiable:
        return purifier
    if isinstance(purifier, Compose):
        return Compose(*[with_stand_ins(s) for s in purifier.stages])  # type: ignore[arg-type]
    return BPDA(purifier)


def identity_surrogate(purifier: Purifier) -> Callable[[torch.Tensor], torch.Tensor]:
    """The identity backward of a stage (bicubic resampling where the stage changes the size)."""

    def f(x: torch.Tensor) -> torch.Tensor:
        return Purifier.bpda_surrogate(purifier, x)

    return f


def state_dict_sha256(module: nn.Module) -> str:
    """sha256 over a module's state dict: every key, dtype, shape and the bytes of each tensor."""
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        t = v.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def defense_fingerprint(purifier: Purifier) -> dict[str, Any]:
    """Identity of a defense: class, configuration (repr) and a hash of its parameters and buffers."""
    weights = sorted(
        {str(m.weights_sha256) for m in purifier.modules() if getattr(m, "weights_sha256", None)}
    )
    return {
        "class": f"{type(purifier).__module__}.{type(purifier).__qualname__}",
        "repr": repr(purifier),
        "params_sha256": state_dict_sha256(purifier),
        "weights_sha256": weights,
    }


def defended(
    purifier: Purifier, classifier: nn.Module, resolution: ResolutionPolicy, eot_samples: int
) -> tuple[nn.Module, nn.Module, int]:
    """``(attacked module, scorer, eot)``: ``Defended``, EOT-wrapped when randomised and ``eot > 1``."""
    scorer = Defended(purifier, classifier, resolution)
    n = eot_samples if purifier.randomized else 1
    module: nn.Module = EOT(scorer, n) if n > 1 else scorer
    return module, scorer, n
