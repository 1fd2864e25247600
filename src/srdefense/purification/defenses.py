"""Registers the built-in defenses (imported lazily by :mod:`srdefense.purification.registry`).

Each module below registers its own defenses with ``@register_defense``.
"""

from __future__ import annotations
