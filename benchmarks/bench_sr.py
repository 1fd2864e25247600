"""Throughput of the upconv7 SR network relative to the machine's fp32 GEMM rate.

The GEMM rate is that of the faster of PyTorch's two fp32 matrix multiplies: ``torch.mm``
(MKL in the x86 builds) and oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``, where the
build has it). The convolutions run on oneDNN, and MKL takes its AVX2 code on AMD CPUs: on a
2-core Zen 5 ``torch.mm`` reached 160-190 GFLOP/s and oneDNN's matmul 350-420, so against
``torch.mm`` alone the network read 1.8 "of the GEMM rate".

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


def _onednn_mm() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """``a @ b`` by oneDNN's matmul, or ``None`` where this build has no such op."""
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None

    def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return op(a, b, None, "none", [], "")  # a @ b.T; b is square and random, so alike

    try:
        mm(torch.ones(4, 4), torch.ones(4, 4))
    except RuntimeError:
        return None
    return mm


def _gemms() -> dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]:
    """The fp32 matrix multiplies this build has, by name: ``torch.mm`` and, where it exists, oneDNN's."""
    gemms: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"torch.mm": torch.mm}
    if (mm := _onednn_mm()) is not None:
        gemms["onednn"] = mm
    return gemms


def gemm_flops_per_s(threads: int, n: int = 2048, repeats: int = 3) -> float:
    """fp32 GEMM rate (FLOP/s) of two ``n x n`` matrices with ``threads`` threads: the faster
    of ``torch.mm`` and oneDNN's matmul."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n)
        b = torch.randn(n, n)
        t = min(_best_time(lambda f=f: f(a, b), repeats) for f in _gemms().values())
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
        forward time), ``net_flops_per_s``, ``gemm_flops_per_s`` (the faster GEMM) and each
        GEMM's own rate, ``fraction`` (network rate / GEMM rate), ``images_per_s`` and the
        settings.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net = create_sr_model("upconv7")
        x = torch.rand(batch, 3, size, size)
        n = 2048
        a, b = torch.randn(n, n), torch.randn(n, n)
        gemms = _gemms()

        def run() -> None:
            with torch.inference_mode():
                net(x)

        seconds = float("inf")
        gemm_s = dict.fromkeys(gemms, float("inf"))
        run()
        for f in gemms.values():
            f(a, b)
        for _ in range(rounds):
            seconds = min(seconds, _best_time(run, 1, warmup=0))
            for name, f in gemms.items():
                gemm_s[name] = min(gemm_s[name], _best_time(lambda f=f: f(a, b), 2, warmup=0))
    finally:
        torch.set_num_threads(old)
    rates = {name: 2 * n**3 / t for name, t in gemm_s.items()}
    gemm = max(rates.values())
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
        **{f"gemm_{name}_flops_per_s": r for name, r in rates.items()},
        "fraction": rate / gemm,
        "images_per_s": batch / seconds,
    }


if __name__ == "__main__":
    print(bench_upconv7())
