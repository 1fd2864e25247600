"""Perturbation budgets: parsing ``"4/255"``-style values and formatting them back (a leaf module)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError


def parse_eps(value: str | float | int) -> float:
    """Parse one perturbation budget: ``"4/255"``, ``"0.01"``, ``0.01`` or ``4`` (4 is not 4/255).

    Raises:
        ConfigError: if the value is not a finite non-negative number or fraction.
    """
    if isinstance(value, bool):
        raise ConfigError(f"eps: expected a number such as 4/255 or 0.01, got {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    else:
        text = str(value).strip()
        try:
            if "/" in text:
                a, _, b = text.partition("/")
                out = float(a) / float(b)
            else:
                out = float(text)
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"eps: expected a number such as 4/255 or 0.01, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise ConfigError(f"eps: expected a finite value >= 0, got {value!r}")
    return out


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


def format_eps(eps: float | None) -> str:
    """Readable budget: ``4/255`` when it is a whole number of 255ths, else ``%g``; ``-`` for None."""
    if eps is None:
        return "-"
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"
