"""Cost of one white-box attack step through the paper defense, against the forward pass alone.

The attacked model is ``Defended(paper_defense(), create_classifier("efficientnet_lite0"))``:
wavelet denoising, upconv7 x2 super-resolution, then EfficientNet-Lite0 on the 448 x 448 image.
One attack step is a forward pass with autograd, the cross-entropy loss, and
``torch.autograd.grad`` with respect to the input (what PGD/APGD do each iteration). The
reference is the plain inference forward (``torch.no_grad``) on the same batch, timed
alternately with the step in the same run (best of ``rounds``), so machine load hurts both.
Both are timed with upconv7's Winograd convolutions forced on and forced off
(``upconv7.USE_WINOGRAD``), alternately, for the speed-up Winograd brings to each; the step /
forward ratio is that of the CPU's default (``upconv7.winograd_enabled()``: Winograd where the
compiled kernel runs, AVX-512 or AVX2, or oneDNN lacks AVX-512).

Peak memory is measured in a fresh child process per configuration, with glibc's default
allocator settings (peak RSS during the pass minus the RSS just before it, per image):

* a batch of ``--batch`` photos at 224 -> 448: inference forward and attack step;
* one large image (``--large``, default 1024 x 1024) through wavelet denoising + SR only (the
  classifier at 2048 x 2048 would dominate): the gradient with ``grad_checkpoint=False`` (every
  activation kept) against the default (checkpointed in tiles of 256 input pixels).

Run: ``.venv/bin/python benchmarks/bench_adaptive.py [--batch 4] [--threads 2] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _photos(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    from srdefense.data import collate, load_dataset

    ds = load_dataset("samples")
    x, y, _ = collate([ds[i % len(ds)] for i in range(n)])
    return x, y


def _model():
    from srdefense import Defended, create_classifier, paper_defense

    return Defended(paper_defense(), create_classifier("efficientnet_lite0")).eval()


def _step(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    xi = x.clone().requires_grad_(True)
    loss = F.cross_entropy(model(xi), y)
    (g,) = torch.autograd.grad(loss, xi)
    return g


def _forward(model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def _time_forward_and_step(model, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Seconds of one inference forward and of one attack step, one after the other."""
    t0 = time.perf_counter()
    _forward(model, x)
    t1 = time.perf_counter()
    _step(model, x, y)
    return t1 - t0, time.perf_counter() - t1


def child(kind: str, batch: int, size: int, threads: int) -> None:
    """Measure one pass's peak memory in this (fresh) process and print it as JSON.

    glibc's allocator is left as the library leaves it (no :mod:`srdefense._malloc` tuning,
    which keeps freed memory resident and would make the peak depend on fragmentation).
    """
    torch.set_num_threads(threads)
    if kind in ("forward", "step"):
        model = _model()
        x, y = _photos(batch)
        _forward(model, x[:1])  # load kernels
        before = _rss_mb()
        _forward(model, x) if kind == "forward" else _step(model, x, y)
    else:
        from srdefense import paper_defense

        d = paper_defense()
        d[1].grad_checkpoint = False if kind == "sr-grad-plain" else None
        x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            d(x[:, :, :32, :32])
        before = _rss_mb()
        xi = x.clone().requires_grad_(True)
        (d(xi).mean()).backward()
    print(json.dumps({"peak_mb": _peak_mb() - before, "batch": batch}))


def _measure_memory(kind: str, batch: int, size: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "--child", kind, "--batch", str(batch), "--size", str(size)]
    cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mb"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--large", type=int, default=1024)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--child", default=None)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.batch, args.size, args.threads)
        return
    from srdefense._malloc import tune_malloc

    tune_malloc()
    torch.set_num_threads(args.threads)
    model = _model()
    x, y = _photos(args.batch)
    _forward(model, x)
    _step(model, x, y)
    import srdefense.purification.sr_models.upconv7 as upconv7
    import srdefense.purification.sr_models.winograd as winograd

    default = upconv7.winograd_enabled()
    best = {True: [float("inf")] * 2, False: [float("inf")] * 2}  # Winograd on/off: forward, step
    try:
        for _ in range(args.rounds):
            for use in (True, False):
                upconv7.USE_WINOGRAD = use
                times = _time_forward_and_step(model, x, y)
                best[use] = [min(a, b) for a, b in zip(best[use], times, strict=True)]
    finally:
        upconv7.USE_WINOGRAD = None
    fwd, step = best[default]
    print(f"white-box step through paper + efficientnet_lite0, batch {args.batch} at 224 -> 448, "
          f"{args.threads} threads; upconv7's Winograd by default here: {'on' if default else 'off'} "
          f"(compiled kernel: {winograd.native_isa() or 'none'})")
    print(f"    forward (no_grad): {fwd:.3f} s   ({fwd / args.batch:.3f} s/image)")
    print(f"    attack step (forward + backward to the input): {step:.3f} s")
    print(f"    step / forward: {step / fwd:.2f}x   (target <= 3.5x)")
    (fw, sw), (fd, sd) = best[True], best[False]
    print(f"    Winograd on: forward {fw:.3f} s, step {sw:.3f} s; off (oneDNN's direct convolutions "
          f"only): forward {fd:.3f} s, step {sd:.3f} s; Winograd speed-up: forward {fd / fw:.2f}x, "
          f"step {sd / sw:.2f}x")
    mf = _measure_memory("forward", args.batch, 224, args.threads)
    ms = _measure_memory("step", args.batch, 224, args.threads)
    print(f"    peak memory per image: forward {mf / args.batch:.0f} MB, step {ms / args.batch:.0f} MB")
    n = args.large
    plain = _measure_memory("sr-grad-plain", 1, n, args.threads)
    ckpt = _measure_memory("sr-grad-auto", 1, n, args.threads)
    print(f"gradient through wavelet + SR of one {n}x{n} image, peak memory:")
    print(f"    all activations kept: {plain:.0f} MB; checkpointed tiles (default): {ckpt:.0f} MB "
          f"({plain / max(ckpt, 1):.1f}x less)")


if __name__ == "__main__":
    main()
