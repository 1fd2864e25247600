"""Registers the built-in defenses (imported lazily by :mod:`srdefense.purification.registry`).

Each module below registers its own defenses with ``@register_defense``.
"""

from __future__ import annotations

from . import (
    jpeg,  # noqa: F401,E402  (jpeg)
    pipeline,  # noqa: F401,E402  (none, paper, wd, sr, nearest, bicubic)
    quantize,  # noqa: F401,E402  (bit-depth, median, feature-squeezing)
    quilting,  # noqa: F401,E402  (quilting)
    randomized,  # noqa: F401,E402  (random-resize-pad, pixel-deflection)
    tvm,  # noqa: F401,E402  (tvm)
)
