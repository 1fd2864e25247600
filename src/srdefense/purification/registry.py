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
from .base import Purifier


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


def _parse_value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if "/" in text:  # fractions such as 4/255
        a, _, b = text.partition("/")
        try:
            return float(a) / float(b)
        except ValueError:
            pass
    return text


def parse_defense_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``name:key=value:...`` into the name and a parameter dict.

    Raises:
        ValueError: for a malformed parameter.
    """
    name, *parts = spec.strip().split(":")
    params: dict[str, Any] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"defense {spec!r}: expected 'name:key=value', got parameter {part!r}")
        params[key.strip().replace("-", "_")] = _parse_value(value.strip())
    return name, params


def create_defense(spec: str, **overrides: Any) -> Purifier:
    """Create a registered defense from a spec string such as ``"wd:sigma=0.02"``.

    Args:
        spec: registry name, optionally followed by ``:key=value`` parameters.
        **overrides: more parameters (take precedence over the spec's).

    Raises:
        KeyError: unknown name (the message lists the known names).
        TypeError: unknown parameter (the message lists the accepted ones).
    """
    _ensure_builtin_defenses()
    name, params = parse_defense_spec(spec)
    info = DEFENSES.get(name)
    params.update(overrides)
    sig = inspect.signature(info.factory)
    accepts_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in params if k not in sig.parameters]
    if unknown and "sr_model" in sig.parameters and not accepts_kwargs:
        params, unknown = _fold_sr_options(name, params, unknown, info.defaults.get("sr_model"))
    if unknown and not accepts_kwargs:
        known = ", ".join(sig.parameters) or "(none)"
        raise TypeError(f"defense {name!r}: unknown parameter(s) {unknown}; accepted: {known}")
    return info.factory(**params)


def _fold_sr_options(
    name: str, params: dict[str, Any], unknown: list[str], default_sr: Any
) -> tuple[dict[str, Any], list[str]]:
    """Pass the options of the SR backend on: ``paper:sr_model=upconv7:noise=2`` -> ``"upconv7:noise=2"``."""
    from .superres import SR_MODELS, split_sr_spec

    sr_name, sr_opts = split_sr_spec(str(params.get("sr_model", default_sr)))
    if sr_name not in SR_MODELS:
        return params, unknown
    accepted = inspect.signature(SR_MODELS.get(sr_name).factory).parameters
    fold = [k for k in unknown if k in accepted and k not in ("weights", "scale")]
    if not fold:
        return params, unknown
    params = dict(params)
    sr_opts.update({k: params.pop(k) for k in fold})
    opts = "".join(f":{k}={'none' if v is None else v}" for k, v in sr_opts.items())
    params["sr_model"] = sr_name + opts
    return params, [k for k in unknown if k not in fold]


def list_defenses() -> list[DefenseInfo]:
    """All registered defenses, sorted by name."""
    _ensure_builtin_defenses()
    return [DEFENSES.get(n) for n in DEFENSES.names()]


def _ensure_builtin_defenses() -> None:
    # Importing the module registers the built-in defenses (kept lazy to avoid import cycles).
    from . import defenses  # noqa: F401
