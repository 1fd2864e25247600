"""Served throughput and latency of ``srdefense serve`` against the library's offline batched rate.

Starts ``srdefense serve`` as a subprocess on 127.0.0.1 (a free port), sends a bounded number of
``POST /v1/classify`` requests (the embedded photos, in turn) at concurrency 1, 4 and 16, then
stops the server with SIGTERM. Prints, per concurrency: throughput (images/s), p50 and p99
latency, and the mean batch size the server reported. The reference is the library doing the
same work offline on the same photos: decode, preprocess, then the classifier without and with
the defense, in batches of ``--max-batch``; it is measured right before and right after each
served level and averaged, so each ratio compares rates taken under the same load; it runs in
a thread of its own, as the server's worker does.

Target: served throughput at concurrency 16 >= 0.8 x the offline batched throughput.

Run: ``.venv/bin/python benchmarks/bench_serve.py`` (``--requests 200`` for the full count;
``--defense wd`` for a quick run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch

import srdefense
from srdefense._malloc import tune_malloc
from srdefense.data import decode_image, embedded_samples, preprocess

TARGET = 0.8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Offline:
    """The library doing the server's work on the same photos, in batches of ``max_batch``."""

    def __init__(self, defense: str, classifier: str, max_batch: int, device: str) -> None:
        self.clf = srdefense.create_classifier(classifier, device=device)
        self.purifier = srdefense.create_defense(defense).to(device).eval()
        self.max_batch = max_batch
        self.device = device

    def _run(self, batch: list[bytes]) -> None:
        cfg = self.clf.cfg
        size = cfg.input_size[-1]
        x = torch.stack(
            [preprocess(decode_image(b), size, cfg.crop_pct, interpolation=cfg.interpolation) for b in batch]
        ).to(self.device)
        with torch.no_grad():
            self.clf(x).softmax(-1).cpu()
            self.clf(self.purifier(x)).softmax(-1).cpu()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    def rate(self, uploads: list[bytes], n: int) -> float:
        """Images per second over ``n`` images (the photos in turn), computed in a worker thread."""
        items = [uploads[i % len(uploads)] for i in range(n)]
        seconds: list[float] = []

        def loop() -> None:
            t0 = time.perf_counter()
            for i in range(0, n, self.max_batch):
                self._run(items[i : i + self.max_batch])
            seconds.append(time.perf_counter() - t0)

        # in a thread of its own, as in the server's worker: on a loaded machine, torch's OpenMP
        # kernels were measured up to 10x slower in the main thread than in another thread
        t = threading.Thread(target=loop)
        t.start()
        t.join()
        return n / seconds[0]


async def served(base: str, uploads: list[bytes], n: int, concurrency: int) -> dict[str, float]:
    """Send ``n`` classify requests with ``concurrency`` in flight; throughput and latency."""
    latencies: list[float] = []
    batches: list[int] = []
    next_item = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=600) as client:

        async def worker() -> None:
            nonlocal next_item
            while next_item < n:
                i = next_item
                next_item += 1
                files = {"image": (f"photo{i}.jpg", uploads[i % len(uploads)], "image/jpeg")}
                t0 = time.perf_counter()
                r = await client.post("/v1/classify", files=files)
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()
                batches.append(r.json()["timings"]["batch_size"])

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {
        "throughput": n / wall,
        "p50": float(np.percentile(lat, 50)),
        "p99": float(np.percentile(lat, 99)),
        "batch": float(np.mean(batches)),
    }


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen[str]:
    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    env.pop("SRDEFENSE_API_KEY", None)
    cmd = [
        sys.executable, "-m", "srdefense.cli.main", "serve",
        "--host", "127.0.0.1", "--port", str(port),
        "--classifier", args.classifier, "--defense", args.defense, "--device", args.device,
        "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms),
        "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen[str], base: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("the server did not start in time")


def main() -> None:
    tune_malloc()  # as the srdefense command does for the server process
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    p.add_argument("--concurrency", default="1,4,16", help="comma-separated concurrency levels")
    p.add_argument("--defense", default="paper")
    p.add_argument("--classifier", default="efficientnet_lite0")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    args = p.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    uploads = [path.read_bytes() for path, _ in embedded_samples()]
    n = args.requests

    offline = Offline(args.defense, args.classifier, args.max_batch, args.device)
    offline.rate(uploads, args.max_batch)  # warm-up
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(args, port)
    results: dict[int, dict[str, float]] = {}
    refs: dict[int, float] = {}
    try:
        wait_ready(proc, base)
        asyncio.run(served(base, uploads, min(n, 2 * args.max_batch), args.max_batch))  # warm-up
        for c in levels:
            # the reference is measured right before and after each level, so the ratio compares
            # rates taken under the same load from other processes
            before = offline.rate(uploads, n)
            results[c] = asyncio.run(served(base, uploads, n, c))
            refs[c] = (before + offline.rate(uploads, n)) / 2
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    ref = float(np.mean(list(refs.values())))

    print(
        f"classify with defense {args.defense!r}, classifier {args.classifier}, device {args.device}, "
        f"torch threads {torch.get_num_threads()}, {n} requests per level, max batch {args.max_batch}, "
        f"max wait {args.max_wait_ms:g} ms"
    )
    print(f"offline batched (library): {ref:.2f} images/s on average (measured around each level)")
    head = ("concurrency", "images/s", "p50 ms", "p99 ms", "mean batch", "offline i/s", "ratio")
    print(" ".join(f"{h:>11}" for h in head))
    for c, r in results.items():
        print(
            f"{c:>11} {r['throughput']:>11.2f} {r['p50']:>11.0f} {r['p99']:>11.0f} {r['batch']:>11.1f} "
            f"{refs[c]:>11.2f} {r['throughput'] / refs[c]:>11.2f}"
        )
    if 16 in results:
        ratio = results[16]["throughput"] / refs[16]
        verdict = "meets" if ratio >= TARGET else "misses"
        print(f"served at concurrency 16 / offline batched: {ratio:.2f} ({verdict} the target of {TARGET})")


if __name__ == "__main__":
    main()
