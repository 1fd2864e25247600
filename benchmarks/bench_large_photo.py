"""Peak memory and time of ``srdefense purify --defense paper`` on one 12-megapixel photo.

A 4000 x 3000 photo is made from an embedded ImageNet photo (bicubic upscaling, plus mild
noise so that it does not compress to nothing) and saved as a JPEG (quality 95). The command
runs in a child process, exactly as a user would run it (default options: tiles of 256 input
pixels); its peak resident memory is the child's ``ru_maxrss``. The output is the 8000 x 6000
PNG. Target: peak RSS <= 3 GB.

Run: ``.venv/bin/python benchmarks/bench_large_photo.py [--width 4000 --height 3000] [--precision fp32]``
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_photo(path: Path, width: int, height: int) -> None:
    from srdefense.data.samples import embedded_samples

    src = Image.open(embedded_samples()[7][0]).convert("RGB").resize((width, height), Image.BICUBIC)
    a = np.asarray(src, dtype=np.float32)
    a = a + np.random.default_rng(0).normal(0, 2.0, a.shape).astype(np.float32)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, quality=95)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=4000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "photo.jpg"
        make_photo(photo, args.width, args.height)
        cmd = [sys.executable, "-m", "srdefense.cli.main", "purify", str(photo)]
        cmd += ["--out", str(Path(tmp) / "out")]
        cmd += ["--defense", "paper", "--quiet", "--precision", args.precision]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        seconds = time.perf_counter() - t0
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        out = Image.open(Path(tmp) / "out" / "photo.png")
        mp = args.width * args.height / 1e6
        print(f"srdefense purify --defense paper --precision {args.precision}, one "
              f"{args.width}x{args.height} ({mp:.1f} MP) photo -> {out.size[0]}x{out.size[1]} PNG, "
              f"{args.threads} threads")
        print(f"    time: {seconds:.1f} s (process start and PNG write included)")
        print(f"    peak RSS: {peak_gb:.2f} GB (target <= 3 GB)")


if __name__ == "__main__":
    main()
