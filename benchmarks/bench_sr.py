"""Throughput of the upconv7 SR network relative to the machine's fp32 GEMM rate.

``bench_upconv7()`` returns a dict (it prints nothing); run this file to print it::

    .venv/bin/python benchmarks/bench_sr.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from srdefense.purification.sr_models.upconv7 import upconv7_flops
from srdefense.purification.superres import create_sr_model


def _best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_flops_per_s(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """fp32 ``torch.mm`` rate (FLOP/s) of two ``n x n`` matrices with ``threads`` threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        t = _best_time(lambda: torch.mm(a, b), repeats)
    finally:
        torch.set_num_threads(old)
    return 2 * n**3 / t


def bench_upconv7(batch: int = 4, size: int = 224, threads: int = 2, rounds: int = 3) -> dict:
    """Measure upconv7 inference throughput as a fraction of the fp32 GEMM rate.

    The network forward and a large ``torch.mm`` are timed alternately for ``rounds`` rounds
    with the same thread count, and the best time of each is kept, so that load from other
    processes on a shared machine hurts both numbers alike.

    Args:
        batch: images per forward.
        size: input side (the output is ``2 * size``).
        threads: torch intra-op threads for both measurements.
        rounds: alternating timing rounds (the best of each is kept).

    Returns:
        A dict with ``flops`` (analytic, 2 x MACs of the 7 convolutions), ``seconds`` (best
        forward time), ``net_flops_per_s``, ``gemm_flops_per_s``, ``fraction``
        (network rate / GEMM rate), ``images_per_s`` and the settings.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = create_sr_model("upconv7")
        x = torch.rand(batch, 3, size, size)
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)

        def run() -> None:
            with torch.inference_mode():
                net(x)

        seconds = gemm_s = float("inf")
        run()
        torch.mm(a, b)
        for _ in range(rounds):
            seconds = min(seconds, _best_time(run, 1, warmup=0))
            gemm_s = min(gemm_s, _best_time(lambda: torch.mm(a, b), 2, warmup=0))
    finally:
        torch.set_num_threads(old)
    gemm = 2 * n**3 / gemm_s
    flops = upconv7_flops(size, size, batch)
    rate = flops / seconds
    return {
        "batch": batch,
        "size": size,
        "threads": threads,
        "flops": flops,
        "seconds": seconds,
        "net_flops_per_s": rate,
        "gemm_flops_per_s": gemm,
        "fraction": rate / gemm,
        "images_per_s": batch / seconds,
    }


if __name__ == "__main__":
    print(bench_upconv7())
