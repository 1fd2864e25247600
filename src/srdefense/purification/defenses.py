"""Registers the built-in defenses (imported lazily by :mod:`srdefense.purification.registry`).

Each module below registers its own defenses with ``@register_defense``.
"""

from __future__ import annotations

from . import pipeline  # noqa: F401,E402  (none, paper, wd, sr, nearest, bicubic)
