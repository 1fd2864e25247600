"""The defense registry: named purifiers with parameters, for the API and the command line.

A defense is asked for by a spec string ``name`` or ``name:key=value:key=value``,
for example ``wd:sigma=0.02`` or ``jpeg:quality=75``. Values are parsed as int, float,
bool (``true``/``false``) or ``none`` when they look like one, else kept as strings.
"""

from __future__ import annotations

import inspect
import typing
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
        differentiable: whether the default configuration has a true gradient (read from the
            defense itself, see :func:`_declared`).
        randomized: whether it draws random numbers (read from the defense itself).
        fast: whether ``srdefense demo`` includes it (seconds per batch on a CPU).
        defaults: default parameter values (from the factory's signature).
    """

    name: str
    factory: Callable[..., Purifier]
    reference: str
    description: str
    fast: bool = True
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def differentiable(self) -> bool:
        """Whether the default configuration has a true gradient, as the defense declares it."""
        return _declared(self)[0]

    @property
    def randomized(self) -> bool:
        """Whether the default configuration draws random numbers, as the defense declares it."""
        return _declared(self)[1]

    @property
    def capabilities(self) -> dict[str, Any]:
        """``differentiable``, ``randomized`` and ``fast``, as in the listing."""
        return {"differentiable": self.differentiable, "randomized": self.randomized, "fast": self.fast}


DEFENSES: Registry[DefenseInfo] = Registry("defense")

_DECLARED: dict[str, tuple[bool, bool]] = {}


def _declared(info: DefenseInfo) -> tuple[bool, bool]:
    """``(differentiable, randomized)`` of a defense's default configuration, read once.

    The default configuration is built and asked; a factory whose default cannot be built
    (quilting needs a patch database) is answered by the class its return annotation names,
    whose class attributes declare the same.
    """
    hit = _DECLARED.get(info.name)
    if hit is None:
        try:
            declared: Any = info.factory()
        except (TypeError, ValueError):
            declared = typing.get_type_hints(info.factory).get("return")
            if not (isinstance(declared, type) and issubclass(declared, Purifier)):
                raise TypeError(
                    f"defense {info.name!r}: its default cannot be built and its factory's return "
                    "annotation names no Purifier class to read differentiable/randomized from"
                ) from None
        hit = _DECLARED[info.name] = (bool(declared.differentiable), bool(declared.randomized))
    return hit


def register_defense(
    name: str,
    *,
    reference: str,
    description: str,
    fast: bool = True,
) -> Callable[[Callable[..., Purifier]], Callable[..., Purifier]]:
    """Decorator registering a purifier factory under ``name``.

    Whether the defense has a gradient and draws random numbers is not restated here: the
    purifier declares it (its ``differentiable`` and ``randomized`` attributes) and
    :class:`DefenseInfo` reads them from the default configuration.

    Args:
        name: registry name.
        reference: the paper it comes from.
        description: one line for ``srdefense list``.
        fast: whether ``srdefense demo`` includes it.

    Returns:
        The decorator; it returns the factory unchanged.
    """

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
