"""ImageNet-1k (ILSVRC-2012) class names and WordNet ids, shipped with the package.

The file ``imagenet_classes.txt`` (one ``wnid<TAB>names`` line per class, in the standard
index order) is derived from timm 1.0.31 (Apache-2.0); see ``DATA_SOURCES.md``.
"""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def _table() -> tuple[tuple[str, str], ...]:
    text = resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    rows = tuple(tuple(line.split("\t", 1)) for line in text.splitlines() if line.strip())
    if len(rows) != 1000 or any(len(r) != 2 for r in rows):
        raise RuntimeError("imagenet_classes.txt is corrupt: expected 1000 'wnid<TAB>names' lines")
    return rows  # type: ignore[return-value]


def imagenet_wnids() -> list[str]:
    """The 1000 WordNet ids in class-index order (index 0 is ``n01440764``, tench)."""
    return [wnid for wnid, _ in _table()]


def imagenet_classes(*, full: bool = False) -> list[str]:
    """The 1000 class names in class-index order.

    Args:
        full: return every lemma of the synset (``"tench, Tinca tinca"``) instead of the first
            (``"tench"``). First lemmas are not unique (two "crane", two "maillot").

    Returns:
        A new list of 1000 names.
    """
    return [names if full else names.split(",")[0].strip() for _, names in _table()]


@cache
def _wnid_index() -> dict[str, int]:
    return {wnid: i for i, (wnid, _) in enumerate(_table())}


def wnid_to_index() -> dict[str, int]:
    """Mapping from WordNet id to class index (a new dict)."""
    return dict(_wnid_index())
