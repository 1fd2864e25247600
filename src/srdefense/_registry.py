"""A small explicit registry: unknown names raise an error listing the known names.

Every ``list_*`` function of the package (classifiers, SR models, denoisers, defenses,
attacks) returns entries of the one shape :class:`RegistryInfo` describes, so a caller reads
``info.name`` / ``info.description`` / ``info.reference`` / ``info.capabilities`` whatever the
registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class RegistryInfo(Protocol):
    """What every registry entry tells about itself (returned by every ``list_*`` function).

    Attributes:
        name: registry name.
        description: one line for listings.
        reference: the paper or source it comes from.
        capabilities: registry-specific facts as a JSON-able dict (e.g. a defense's
            ``differentiable`` and ``randomized``, an attack's ``norm``).
    """

    @property
    def name(self) -> str:
        """Registry name."""
        ...

    @property
    def description(self) -> str:
        """One line for listings."""
        ...

    @property
    def reference(self) -> str:
        """The paper or source it comes from."""
        ...

    @property
    def capabilities(self) -> dict[str, Any]:
        """Registry-specific facts (JSON-able)."""
        ...


class Registry(Generic[T]):
    """A named mapping of entries with helpful errors.

    Args:
        kind: what the entries are ("classifier", "defense", ...), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T, *, overwrite: bool = False) -> T:
        """Register ``entry`` under ``name``."""
        if name in self._entries and not overwrite:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(entry: T) -> T:
            return self.add(name, entry)

        return deco

    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise ``KeyError`` listing the known names."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
