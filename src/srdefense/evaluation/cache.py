"""The adversarial-example cache: one file per (attacked module, attack, batch, seed).

Every entry stores the examples with a sha256 of their bytes, their shape and dtype, and the
key it was made for. On read the entry is checked: checksum, key, shape, dtype, range [0, 1]
and the attack's budget against the clean batch. An entry that fails any check is reported as
a warning and recomputed, never used. Files are written atomically (a temporary file in the
same folder, then ``os.replace``), so ranks or processes sharing a cache never read a torn file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from .io import default_file_mode

CACHE_VERSION = 3
"""Part of every cache key: bump it when the way adversarial examples are produced changes."""


def tensor_sha256(t: Tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes."""
    c = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{c.dtype}{tuple(c.shape)}".encode())
    if c.numel():
        h.update(c.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _within_budget(adv: Tensor, x: Tensor, eps: float | None, norm: str | None) -> bool:
    if eps is None or norm not in ("linf", "l2"):
        return True
    d = (adv.double() - x.double()).flatten(1)
    size = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    return bool((size <= eps * (1 + 1e-5) + 1e-6).all())


class AdversarialCache:
    """Adversarial examples on disk, checked on every read.

    Args:
        root: cache folder, or ``None`` for no caching.

    Attributes:
        hits: entries read and used.
        misses: entries not found (or rejected) and so computed.
        rejected: ``(path, reason)`` of entries that failed a check and were recomputed.
    """

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.hits = 0
        self.misses = 0
        self.rejected: list[tuple[str, str]] = []

    def path(self, key: str) -> Path | None:
        """File of a key (``None`` without a cache folder)."""
        return None if self.root is None else self.root / "adv" / key[:2] / f"{key}.pt"

    def get(
        self, key: str, clean: Tensor, eps: float | None = None, norm: str | None = None
    ) -> Tensor | None:
        """The cached examples for ``key``, checked against the clean batch, or ``None``.

        Args:
            key: the cache key.
            clean: the clean batch the examples were made from (shape, device, dtype, budget).
            eps: the attack's budget (``None``: minimal-norm attack, no budget check).
            norm: ``"linf"`` or ``"l2"``.
        """
        p = self.path(key)
        if p is None or not p.exists():
            return None
        reason = None
        adv: Tensor | None = None
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - an unreadable entry is recomputed
            reason = f"unreadable ({type(exc).__name__})"
        else:
            adv = obj.get("adv") if isinstance(obj, dict) else None
            if not isinstance(adv, Tensor):
                reason = "no tensor in the entry"
            elif obj.get("key") != key:
                reason = "made for another key"
            elif obj.get("sha256") != tensor_sha256(adv):
                reason = "checksum mismatch (the file was changed)"
            elif tuple(adv.shape) != tuple(clean.shape):
                reason = f"shape {tuple(adv.shape)}, expected {tuple(clean.shape)}"
            elif adv.dtype != torch.float32:
                reason = f"dtype {adv.dtype}, expected torch.float32"
            elif not bool(torch.isfinite(adv).all()) or adv.min() < 0 or adv.max() > 1:
                reason = "values outside [0, 1]"
            elif not _within_budget(adv, clean.detach().cpu(), eps, norm):
                reason = f"perturbation exceeds the budget {eps:g} ({norm})"
        if reason is not None or adv is None:
            self.rejected.append((str(p), reason or "invalid"))
            return None
        return adv.to(device=clean.device, dtype=clean.dtype)

    def put(self, key: str, adv: Tensor) -> None:
        """Store examples atomically, with their checksum."""
        p = self.path(key)
        if p is None:
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        t = adv.detach().cpu().float().contiguous()
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        os.fchmod(fd, default_file_mode())  # readable by every rank and user the umask allows
        os.close(fd)
        try:
            torch.save({"adv": t, "sha256": tensor_sha256(t), "key": key, "v": CACHE_VERSION}, tmp)
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
