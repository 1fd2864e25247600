"""The service's settings: one frozen dataclass, validated once when it is built."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from ..data.io import DEFAULT_MAX_PIXELS

#: the attacks the service runs (the gradient family; minimal-norm attacks have no eps bound)
SERVICE_ATTACKS = ("fgsm", "pgd")

_LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1 or ``localhost``)."""
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    """Settings of the purification service.

    Attributes:
        classifier: classifier spec for :func:`srdefense.create_classifier`.
        classifier_weights: weight file for the classifier (``None``: its default weights).
        defense: the default defense spec (``paper``, ``wd:sigma=0.02``, ...).
        device: torch device the worker runs the model on.
        host: address to bind; anything but loopback needs ``api_key``.
        port: TCP port.
        api_key: key required on every ``/v1`` request (``None``: no key).
        cors: origins allowed by CORS (empty: CORS off).
        max_upload_mb: largest request body, in MiB (413 beyond).
        max_pixels: largest image, in pixels (413 beyond; the reader's decompression-bomb guard).
        max_batch: most images the worker runs at once.
        max_wait_ms: how long the worker waits for a batch to fill after its first request.
        max_eps: largest attack eps (Linf, image units).
        max_steps: most PGD steps.
        max_top_k: largest ``top_k``.
        max_defenses: distinct defense specs kept loaded (least recently used dropped first).
    """

    classifier: str = "efficientnet_lite0"
    classifier_weights: str | None = None
    defense: str = "paper"
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    cors: tuple[str, ...] = field(default_factory=tuple)
    max_upload_mb: float = 20.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_eps: float = 16 / 255
    max_steps: int = 20
    max_top_k: int = 20
    max_defenses: int = 4

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.api_key:
            raise ValueError(
                f"host {self.host!r} is reachable from other machines: it requires an API key "
                "(--api-key KEY or the SRDEFENSE_API_KEY environment variable)"
            )
        checks: list[tuple[str, float, float]] = [
            ("max_upload_mb", self.max_upload_mb, 0),
            ("max_pixels", self.max_pixels, 0),
            ("max_batch", self.max_batch, 0),
            ("max_eps", self.max_eps, 0),
            ("max_steps", self.max_steps, 0),
            ("max_top_k", self.max_top_k, 0),
            ("max_defenses", self.max_defenses, 0),
        ]
        for name, value, low in checks:
            if not math.isfinite(value) or value <= low:
                raise ValueError(f"{name}: expected a number > {low}, got {value}")
        if not math.isfinite(self.max_wait_ms) or self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms: expected a number >= 0, got {self.max_wait_ms}")
        if self.max_eps > 1:
            raise ValueError(f"max_eps: expected at most 1 (image units, e.g. 16/255), got {self.max_eps}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port: expected 0..65535 (0: any free port), got {self.port}")

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)
