"""The evaluation's configuration error (a leaf module: every evaluation module may raise it)."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid experiment configuration (unknown name, bad value); the message says why."""
