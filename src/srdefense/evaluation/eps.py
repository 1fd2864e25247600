"""Perturbation budgets for the evaluation: :mod:`srdefense._eps` raising :class:`ConfigError` (a leaf)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._eps import format_eps
from .._eps import parse_eps as _parse_eps
from .errors import ConfigError

__all__ = ["format_eps", "parse_eps", "parse_eps_list"]


def parse_eps(value: str | float | int) -> float:
    """Parse one perturbation budget: ``"4/255"``, ``"0.01"``, ``0.01`` or ``4`` (4 is not 4/255).

    Raises:
        ConfigError: if the value is not a finite non-negative number or fraction.
    """
    return _parse_eps(value, ConfigError)


def parse_eps_list(value: str | float | Iterable[str | float] | None) -> list[float]:
    """Parse a comma-separated string (``"2/255,4/255"``) or a list of budgets."""
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = [v for v in value.split(",") if v.strip()]
    elif isinstance(value, int | float):
        items = [value]
    else:
        items = list(value)
    return [parse_eps(v) for v in items]
