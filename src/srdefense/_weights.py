"""Safe weight loading: every file is checked against a pinned sha256 before it is read."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch
from torch import Tensor, nn


class WeightsError(RuntimeError):
    """Raised when a weight file is missing, corrupt or has an unexpected layout."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_pin(path: Path, expected: str | None, actual: str) -> None:
    if expected is None:
        return
    expected = expected.lower()
    if len(expected) < 8 or any(c not in "0123456789abcdef" for c in expected):
        raise ValueError(f"sha256 pin for {path}: expected at least 8 hex digits, got {expected!r}")
    if not actual.startswith(expected):
        raise WeightsError(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file is corrupt or not the pinned release"
        )


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
    _check_pin(path, expected, sha256_file(path))


def load_weights(path: str | Path, sha256: str | None = None) -> tuple[dict[str, Tensor], str]:
    """Load a state dict safely and return it with the sha256 of the bytes it was read from.

    The file is read into memory once; the digest is computed from those bytes, checked
    against the pin, and the tensors are decoded from the same bytes. So the digest is the
    one of the weights actually loaded, even if the file is replaced meanwhile.

    Args:
        path: the weight file (``.safetensors``, or a torch file read with ``weights_only=True``).
        sha256: pinned digest (or prefix of >= 8 hex digits); ``None`` checks nothing (the
            digest is still returned, so the caller can record what it used).

    Returns:
        ``(state_dict, sha256_hex)``.

    Raises:
        WeightsError: missing file, pin mismatch (naming the file and both digests), or a
            file that is not a safe state dict of tensors.
        ValueError: a malformed pin.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    _check_pin(path, sha256, digest)
    if path.suffix == ".safetensors":
        from safetensors.torch import load as load_safetensors

        try:
            return load_safetensors(data), digest
        except Exception as exc:  # safetensors raises its own error types for malformed headers
            raise WeightsError(f"cannot load weights from {path}: {exc}") from exc
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-weight objects
        raise WeightsError(f"cannot load weights from {path} safely: {exc}") from exc
    for key in ("params_ema", "params", "state_dict", "model"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path} does not contain a state dict of tensors")
    return dict(obj), digest


def load_state_dict(path: str | Path, sha256: str | None = None) -> dict[str, Tensor]:
    """Load a state dict from a ``.safetensors`` or torch file, safely.

    torch files are read with ``weights_only=True``; a checkpoint that wraps its weights in
    ``{"state_dict": ...}``, ``{"params": ...}``, ``{"params_ema": ...}`` or ``{"model": ...}``
    is unwrapped (``params_ema`` preferred, as BasicSR does). See :func:`load_weights` for the
    variant that also returns the file's sha256.

    Args:
        path: the weight file.
        sha256: pinned digest (or prefix of >= 8 hex digits) to check first; ``None`` skips.

    Returns:
        A mapping from parameter names to tensors.
    """
    return load_weights(path, sha256)[0]


def mark_weights(module: nn.Module, path: str | Path, sha256: str, pinned: str | None) -> nn.Module:
    """Record on ``module`` which weight file it was loaded from (see :func:`weights_fingerprint`).

    Args:
        module: the module the weights were loaded into.
        path: the weight file.
        sha256: the full digest of the bytes loaded.
        pinned: the pin that was checked, or ``None`` if none was.

    Returns:
        ``module``, with attributes ``weights_file``, ``weights_sha256`` and ``weights_pinned``.
    """
    # setattr: torch types Module.__setattr__ for tensors and modules only
    for name, value in (("weights_file", str(path)), ("weights_sha256", sha256), ("weights_pinned", pinned)):
        setattr(module, name, value)
    return module


def weights_fingerprint(module: nn.Module) -> list[dict[str, str | None]]:
    """The weight files a module (a defense, a classifier, a defended model) was loaded from.

    Every submodule built from a weight file by this package carries the file name and the
    sha256 of the bytes loaded, whether the file was pinned (shipped weights, or a user pin
    such as ``--sr-weights-sha256``) or not (a user file given without a pin). Record this
    list with results so a run says exactly which weights it used.

    Args:
        module: any ``nn.Module``.

    Returns:
        One ``{"module": qualified name, "file": path, "sha256": digest, "pinned": pin or None}``
        per weight-carrying submodule, in module order.

    Example:
        >>> from srdefense import paper_defense
        >>> [f["sha256"][:8] for f in weights_fingerprint(paper_defense())]
        ['605f7d9f']
    """
    out: list[dict[str, str | None]] = []
    for name, m in module.named_modules():
        digest = getattr(m, "weights_sha256", None)
        if isinstance(digest, str):
            out.append(
                {
                    "module": name,
                    "file": getattr(m, "weights_file", None),
                    "sha256": digest,
                    "pinned": getattr(m, "weights_pinned", None),
                }
            )
    return out
