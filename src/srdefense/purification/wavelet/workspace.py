"""Buffers reused from one block of images to the next by the blocked CPU path of the denoiser.

The blocked CPU path of :func:`~srdefense.purification.wavelet.denoise_wavelet` runs the same
computation on many blocks of a few images. Allocating its ~15 block-sized temporaries afresh
for every block makes glibc hand out, return and fault in the same pages again, at a speed that
depends on its adaptive mmap and trim thresholds (measured: 9.5k or 67k page faults for 64
photos, a 2.5x spread). Reusing one set of buffers for all blocks keeps the pages mapped
whatever the allocator does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

Workspace = dict[tuple, Tensor]
"""Buffers reused from one block of images to the next (see :func:`_ws_empty`)."""

Allocator = Callable[[Workspace | None, tuple, tuple[int, ...], Tensor], Tensor]


def _ws_empty(ws: Workspace | None, key: tuple, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised buffer of ``shape``, taken from ``ws`` when it holds one."""
    if ws is None:
        return torch.empty(shape, dtype=like.dtype, device=like.device)
    full = (key, shape, like.dtype, like.device)
    buf = ws.get(full)
    if buf is None:
        buf = ws[full] = torch.empty(shape, dtype=like.dtype, device=like.device)
    return buf


class Buffers:
    """A workspace together with the function that takes buffers from it.

    The allocator is passed in (instead of called by name) so that the package's
    ``_ws_empty`` is the one used, whichever module drives the computation.
    """

    __slots__ = ("ws", "alloc")

    def __init__(self, ws: Workspace, alloc: Allocator = _ws_empty) -> None:
        self.ws = ws
        self.alloc = alloc

    def empty(self, key: tuple, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """An uninitialised buffer of ``shape`` (dtype/device of ``like``), reused across calls."""
        return self.alloc(self.ws, key, shape, like)
