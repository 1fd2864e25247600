"""Process-level tuning of glibc's allocator, for the command line only (never the library).

PyTorch's CPU tensors come from ``malloc``. glibc serves blocks above its mmap threshold with
fresh ``mmap`` pages and returns them on ``free``, so every large temporary tensor costs page
faults; the threshold adapts to the history of the process, which makes the same computation
run at two speeds (measured here: wavelet denoising of 64 photos in 0.041 s or 0.105 s, with
9.7k or 67k page faults per call). A fixed threshold of 32 MiB (glibc's maximum) and a high trim
threshold keep temporaries on the heap. This changes process-wide state, so only the
``srdefense`` command and the benchmarks call it; set ``SRDEFENSE_MALLOC_TUNING=0`` to skip.

Tensors above that threshold still fault in 4 KiB pages. PyTorch's ``THP_MEM_ALLOC_ENABLE=1``
(transparent huge pages for tensors of 2 MiB and more, read once, at PyTorch's first
allocation) is left to the user, not set here: measured on a 2-core AMD EPYC Zen 5 (a
Firecracker VM), it made upconv7 1.25-1.6x faster in a loop of calls, left the demo and a
12-megapixel photo unchanged, and made wavelet denoising 2-3x slower over a process's first
calls, since there a fresh 2 MiB page faults in at about 3 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 512 * 1024 * 1024


def tune_malloc() -> bool:
    """Apply the tuning on Linux with glibc; returns whether it was applied."""
    if os.environ.get("SRDEFENSE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1
    return mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1 and ok
