"""Fidelity and speed of bf16 purification against fp32, on the 20 embedded ImageNet photos.

Fidelity (:func:`srdefense.precision_fidelity`, the library function the evaluation records):
PSNR of the bf16 ``paper`` output against the fp32 output, and top-1 agreement of
``Defended(paper_defense(), efficientnet_lite0)`` between the two precisions, on the clean
photos (224 x 224) and on their FGSM 4/255 versions crafted on the bare classifier.

Speed: upconv7 x2 on a batch of 4 at 224, fp32 against bf16, timed alternately (best of
``--rounds``) with ``--threads`` threads, and the CPU's bf16 features as PyTorch detects them.

Run: ``.venv/bin/python benchmarks/bench_precision.py``
"""

from __future__ import annotations

import argparse
import time

import torch

from srdefense import create_classifier, paper_defense, precision_fidelity
from srdefense.attacks import create_attack
from srdefense.data import collate, load_dataset
from srdefense.purification.precision import bf16_is_fast, cpu_bf16_hardware
from srdefense.purification.superres import create_sr_model


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hw = cpu_bf16_hardware()
    print(f"CPU bf16 features: {hw}; auto picks bf16 here: {bf16_is_fast('cpu')}")
    ds = load_dataset("samples")
    x, y, _ = collate([ds[i] for i in range(len(ds))])
    clf = create_classifier("efficientnet_lite0").eval()
    adv = create_attack("fgsm", eps=4 / 255)(clf, x, y)
    for name, images in (("clean", x), ("FGSM 4/255", adv)):
        f = precision_fidelity(paper_defense(), images, clf, precision="bf16")
        print(f"fidelity, paper defense, bf16 vs fp32, {f.n} embedded photos ({name}):")
        print(f"    PSNR {f.psnr_db:.1f} dB (worst image {f.psnr_min_db:.1f} dB), max |diff| "
              f"{f.max_abs_diff:.4f}, mean |diff| {f.mean_abs_diff:.5f}, top-1 agreement "
              f"{f.top1_agreement:.2f}")
    if not hw["onednn_bf16"]:
        print("bf16 speed not timed: oneDNN has no bf16 kernels on this CPU (needs AVX-512 or "
              "AVX-NE-CONVERT); the fidelity above ran on PyTorch's reference bf16 kernels")
        return
    net = create_sr_model("upconv7")
    xb = torch.rand(4, 3, 224, 224)

    def fp32() -> None:
        with torch.inference_mode():
            net(xb)

    def bf16() -> None:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            net(xb)

    fp32()  # one warm-up call each (weights packed, buffers allocated)
    bf16()
    t32 = tb = float("inf")
    for _ in range(args.rounds):
        t32, tb = min(t32, _once(fp32)), min(tb, _once(bf16))
    print(f"upconv7 x2, batch 4 at 224, {args.threads} threads: fp32 {4 / t32:.2f} img/s, "
          f"bf16 {4 / tb:.2f} img/s, bf16 speed-up {t32 / tb:.2f}x (target 2.5x on AMX machines)")


if __name__ == "__main__":
    main()
