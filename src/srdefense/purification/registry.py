"""The defense registry: named purifiers with parameters, for the API and the command line.

A defense is asked for by a spec string ``name`` or ``name:key=value:key=value``,
for example ``wd:sigma=0.02`` or ``jpeg:quality=75``. Values are parsed as int, float,
bool (``true``/``false``) or ``none`` when they look like one, else kept as strings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._registry import Registry
from .._spec import parse_spec
from .base import Purifier
from .sr_backends import fold_sr_options


@dataclass(frozen=True)
class DefenseInfo:
    """Metadata of a registered defense.

    Attributes:
        name: registry name.
        factory: ``factory(**params) -> Purifier``.
        reference: the paper it comes from.
        description: one line for ``srdefense list``.
        differentiable: whether the default configuration has a true gradient.
        randomized: whether it draws random numbers.
        fast: whether ``srdefense demo`` includes it (seconds per batch on a CPU).
        defaults: default parameter values (from the factory's signature).
    """

    name: str
    factory: Callable[..., Purifier]
    reference: str
    description: str
    differentiable: bool
    randomized: bool
    fast: bool = True
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def capabilities(self) -> dict[str, Any]:
        """``differentiable``, ``randomized`` and ``fast``, as in the listing."""
        return {"differentiable": self.differentiable, "randomized": self.randomized, "fast": self.fast}


DEFENSES: Registry[DefenseInfo] = Registry("defense")


def register_defense(
    name: str,
    *,
    reference: str,
    description: str,
    differentiable: bool,
    randomized: bool = False,
    fast: bool = True,
) -> Callable[[Callable[..., Purifier]], Callable[..., Purifier]]:
    """Decorator registering a purifier factory under ``name``."""

    def deco(factory: Callable[..., Purifier]) -> Callable[..., Purifier]:
        sig = inspect.signature(factory)
        defaults = {
            k: p.default for k, p in sig.parameters.items() if p.default is not inspect.Parameter.empty
        }
        DEFENSES.add(
            name,
            DefenseInfo(
                name=name,
                factory=factory,
                reference=reference,
                description=description,
                differentiable=differentiable,
                randomized=randomized,
                fast=fast,
                defaults=defaults,
            ),
        )
        return factory

    return deco


def parse_defense_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name:key=value:...`` into the name and a parameter dict (:func:`srdefense._spec.parse_spec`).

    Raises:
        ValueError: for a malformed parameter.
    """
    return parse_spec(spec, "defense")


def create_defense(spec: str, **overrides: Any) -> Purifier:
    """Create a registered defense from a spec string such as ``"wd:sigma=0.02"``.

    Args:
        spec: registry name, optionally followed by ``:key=value`` parameters.
        **overrides: more parameters (take precedence over the spec's).

    Raises:
        KeyError: unknown name (the message lists the known names).
        TypeError: unknown parameter (the message lists the accepted ones).
    """
    name, params = parse_defense_spec(spec)
    info = DEFENSES.get(name)
    params.update(overrides)
    sig = inspect.signature(info.factory)
    accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in params if k not in sig.parameters]
    if unknown and "sr_model" in sig.parameters and not accepts_kwargs:
        params, unknown = fold_sr_options(name, params, unknown, info.defaults.get("sr_model"))
    if unknown and not accepts_kwargs:
        known = ", ".join(sig.parameters) or "(none)"
        raise TypeError(f"defense {name!r}: unknown parameter(s) {unknown}; accepted: {known}")
    return info.factory(**params)


def list_defenses() -> list[DefenseInfo]:
    """All registered defenses, sorted by name."""
    return [DEFENSES.get(n) for n in DEFENSES.names()]
