"""Perturbation budgets as text: parsing ``4/255`` or ``0.01``, and formatting back (a leaf).

The experiment configuration, the reports and the service all read and write budgets this
way; the definitions live here, below all of them.
"""

from __future__ import annotations

import math

__all__ = ["format_eps", "parse_eps", "parse_fraction"]


def parse_fraction(text: str) -> float:
    """``"4/255"`` -> 4/255, ``"0.01"`` -> 0.01.

    Raises:
        ValueError: (or ``ZeroDivisionError``) when the text is neither a number nor a fraction.
    """
    text = text.strip()
    if "/" in text:
        a, _, b = text.partition("/")
        return float(a) / float(b)
    return float(text)


def parse_eps(value: str | float | int, error: type[ValueError] = ValueError) -> float:
    """Parse one perturbation budget: ``"4/255"``, ``"0.01"``, ``0.01`` or ``4`` (4 is not 4/255).

    Args:
        value: the budget.
        error: the exception type raised for a bad value (a ``ValueError``).

    Raises:
        ValueError: (``error``) if the value is not a finite non-negative number or fraction.
    """
    if isinstance(value, bool):
        raise error(f"eps: expected a number such as 4/255 or 0.01, got {value!r}")
    if isinstance(value, int | float):
        out = float(value)
    else:
        try:
            out = parse_fraction(str(value))
        except (ValueError, ZeroDivisionError):
            raise error(f"eps: expected a number such as 4/255 or 0.01, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise error(f"eps: expected a finite value >= 0, got {value!r}")
    return out


def format_eps(eps: float | None) -> str:
    """Readable budget: ``4/255`` when it is a whole number of 255ths, else ``%g``; ``-`` for None."""
    if eps is None:
        return "-"
    k = eps * 255
    if eps > 0 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"
