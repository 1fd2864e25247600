"""The one ``name:key=value`` spec parser, for defenses, attacks and SR backends alike (a leaf).

A spec is a registry name optionally followed by parameters: ``wd:sigma=0.02``,
``jpeg:quality=75``, ``pgd:steps=20:eps=8/255``. Values are parsed as int, float, a fraction
such as ``4/255``, bool (``true``/``false``) or ``none`` when they look like one, else kept as
strings; ``-`` in a key becomes ``_`` (``noise-level`` -> ``noise_level``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_spec", "parse_spec", "parse_value"]


def parse_value(text: str) -> Any:
    """Parse one spec value: int, float, fraction, bool, ``none`` or the string itself."""
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


def parse_spec(spec: str, kind: str = "defense") -> tuple[str, dict[str, Any]]:
    """Split ``name:key=value:...`` into the name and a parameter dict.

    Args:
        spec: the spec string.
        kind: what it names ("defense", "attack", ...), for the error message.

    Returns:
        ``(name, params)``.

    Raises:
        ValueError: for a malformed parameter, naming the spec and the parameter.

    Example:
        >>> parse_spec("pgd:steps=20:eps=8/255", "attack")
        ('pgd', {'steps': 20, 'eps': 0.03137254901960784})
    """
    name, *parts = spec.strip().split(":")
    params: dict[str, Any] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"{kind} {spec!r}: expected 'name:key=value', got parameter {part!r}")
        params[key.strip().replace("-", "_")] = parse_value(value.strip())
    return name, params


def format_spec(name: str, params: dict[str, Any]) -> str:
    """The inverse of :func:`parse_spec` for simple values: ``name:key=value:...``."""
    return name + "".join(f":{k}={'none' if v is None else v}" for k, v in params.items())
