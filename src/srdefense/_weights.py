"""Safe weight loading: every file is checked against a pinned sha256 before it is read."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import Tensor


class WeightsError(RuntimeError):
    """Raised when a weight file is missing, corrupt or has an unexpected layout."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_sha256(path: str | Path, expected: str | None) -> None:
    """Raise :class:`WeightsError` if ``path`` is missing or its sha256 differs from ``expected``.

    ``expected`` may be a full digest or a prefix of at least 8 hex digits (as in the
    EDSR-PyTorch file names, ``edsr_baseline_x2-1bc95232.pt``). ``None`` skips the check.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    if expected is None:
        return
    expected = expected.lower()
    if len(expected) < 8:
        raise ValueError(f"sha256 prefix too short for {path}: {expected!r}")
    actual = sha256_file(path)
    if not actual.startswith(expected):
        raise WeightsError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file is corrupt or not the pinned release"
        )


def load_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, Tensor]:
    """Load a state dict from a ``.safetensors`` or torch file, safely.

    torch files are read with ``weights_only=True``; a checkpoint that wraps its weights in
    ``{"state_dict": ...}``, ``{"params": ...}``, ``{"params_ema": ...}`` or ``{"model": ...}``
    is unwrapped (``params_ema`` preferred, as BasicSR does).

    Args:
        path: the weight file.
        sha256: pinned digest (or prefix of >= 8 hex digits) to check first; ``None`` skips.

    Returns:
        A mapping from parameter names to tensors.
    """
    path = Path(path)
    verify_sha256(path, sha256)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-weight objects
        raise WeightsError(f"cannot load weights from {path} safely: {exc}") from exc
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not contain a state dict of tensors")
    return dict(obj)
