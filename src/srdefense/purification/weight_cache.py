"""A process-wide cache of hash-checked weight files (a leaf module).

Super-resolution backends, the spandrel backend and learned denoisers read the same files
again and again (one defense per configuration of an evaluation); each file is read and
checked once per process, keyed by path, pin, modification time and size.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from torch import Tensor

from .._weights import WeightsError, load_weights

__all__ = ["cached_state_dict", "cached_weights"]


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, sha256: str | None, mtime_ns: int, size: int) -> tuple[dict[str, Tensor], str]:
    return load_weights(path, sha256)


def cached_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, Tensor]:
    """Read (and hash-check) a weight file once per process; later calls reuse the CPU tensors.

    The cache key includes the file's modification time and size, so a replaced file is read
    again. The tensors are shared between callers and must not be modified in place
    (``nn.Module.load_state_dict`` copies them, so modules built from them are independent and
    can be moved to any device or dtype).

    Args:
        path: the weight file.
        sha256: pinned digest or prefix (>= 8 hex digits); ``None`` skips the check.

    Returns:
        A new dict (sharing the cached tensors).
    """
    return cached_weights(path, sha256)[0]


def cached_weights(path: str | Path, sha256: str | None = None) -> tuple[dict[str, Tensor], str]:
    """:func:`cached_state_dict` and the sha256 of the bytes the tensors were read from.

    Args:
        path: the weight file.
        sha256: pinned digest or prefix (>= 8 hex digits); ``None`` skips the check.

    Returns:
        ``(state_dict, sha256_hex)``; the dict is new, the tensors shared.
    """
    p = Path(path).resolve()
    if not p.is_file():
        raise WeightsError(f"weight file not found: {path}")
    st = os.stat(p)
    sd, digest = _read_cached(str(p), sha256, st.st_mtime_ns, st.st_size)
    return dict(sd), digest
