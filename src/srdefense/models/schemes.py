"""Spec schemes of :func:`~srdefense.models.create_classifier`: ``SCHEME:NAME`` -> a loader.

A scheme is a prefix such as ``timm`` or ``torchvision`` whose loader builds a classifier from
the rest of the spec (``timm:resnet50`` calls the ``timm`` loader with ``"resnet50"``). Adding
a model source is one loader plus one ``@register_scheme("prefix")``; the registry needs no
special case. A leaf module: the loaders (:mod:`.adapters`) import it, not the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from torch import nn

from .._registry import Registry

__all__ = ["SCHEMES", "SchemeLoader", "register_scheme"]


class SchemeLoader(Protocol):
    """``loader(name, *, weights=None, weights_sha256=None) -> classifier``."""

    def __call__(
        self, name: str, *, weights: str | Path | None = None, weights_sha256: str | None = None
    ) -> nn.Module:
        """Build the classifier ``name`` of this scheme (with ``weights`` instead of its own)."""
        ...


SCHEMES: Registry[SchemeLoader] = Registry("classifier scheme")


def register_scheme(prefix: str) -> Callable[[SchemeLoader], SchemeLoader]:
    """Decorator registering ``loader`` for specs ``PREFIX:NAME``.

    Args:
        prefix: the scheme, without the colon (no dots or slashes: those mark user modules).

    Returns:
        The decorator; it returns the loader unchanged.
    """
    if not prefix or any(c in prefix for c in ".:/\\"):
        raise ValueError(f"prefix: expected a bare word such as 'timm', got {prefix!r}")

    def deco(loader: SchemeLoader) -> SchemeLoader:
        SCHEMES.add(prefix, loader)
        return loader

    return deco
