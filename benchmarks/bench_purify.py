"""Purification speed, as ratios against references measured in the same run.

(a) the torch wavelet denoiser's throughput over scikit-image's ``denoise_wavelet`` on 64 photos
    of 224x224 with 2 threads (target >= 5x);
(b) ``upconv7`` throughput as a fraction of this machine's fp32 matrix-multiply rate: network
    FLOPs / time over GEMM FLOP/s (target >= 0.75).

(a) is printed twice: with glibc's default allocator settings (whose adaptive mmap threshold
makes large temporaries page-fault on some runs and not others: a bimodal time), then with the
allocator tuning that the ``srdefense`` command applies to its own process
(:mod:`srdefense._malloc`); (b) is measured after the tuning. The tuned part runs in a fresh
child process, as the command does, so the parent's allocations leave nothing behind for it
(set ``THP_MEM_ALLOC_ENABLE=1`` in the environment to time PyTorch's huge pages as well).

``--unlucky-allocator`` runs (a) only, with glibc's thresholds pinned at their smallest (every
large temporary freshly mmapped), the state that made the time bimodal before the wavelet code
reused its buffers.

Run: ``.venv/bin/python benchmarks/bench_purify.py [--unlucky-allocator]``
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sr import bench_upconv7  # noqa: E402
from bench_wavelet import bench_wavelet  # noqa: E402

from srdefense._malloc import tune_malloc  # noqa: E402


def _unlucky_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds at 128 KiB: every large temporary is mmapped afresh.

    This is the slow state that glibc's adaptive thresholds may or may not leave a process in;
    forcing it shows what the wavelet code costs when the allocator does not help at all.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    return libc.mallopt(-3, 128 * 1024) == 1 and libc.mallopt(-1, 128 * 1024) == 1


def _print(title: str, figures: dict[str, object]) -> None:
    print(title)
    for k, v in figures.items():
        print(f"    {k}: {v:.4g}" if isinstance(v, float) else f"    {k}: {v}")


def main() -> None:
    if "--tuned" in sys.argv:  # the child: tuned before its first tensor
        applied = tune_malloc()
        label = "allocator tuned as by the srdefense command"
        wavelet = bench_wavelet(n=64, size=224)
        _print(f"(a) wavelet denoising, 64 photos 224x224, 2 threads, {label} (applied: {applied})", wavelet)
        sr = bench_upconv7(batch=4, size=224, threads=2)
        _print("(b) upconv7 x2 throughput vs fp32 GEMM, 2 threads", sr)
        return
    label = "default allocator"
    if "--unlucky-allocator" in sys.argv:
        label = "glibc thresholds fixed at 128 KiB (the worst case of the default allocator)"
        print(f"    (applied: {_unlucky_allocator()})")
    _print(f"(a) wavelet denoising, 64 photos 224x224, 2 threads, {label}", bench_wavelet(n=64, size=224))
    if "--unlucky-allocator" not in sys.argv:
        sys.stdout.flush()
        subprocess.run([sys.executable, __file__, "--tuned"], check=True)


if __name__ == "__main__":
    main()
