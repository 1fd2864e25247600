"""Does a bf16 gradient weaken a white-box attack? PGD through ``paper`` with fp32 and bf16 gradients.

White-box PGD (Linf ``--eps255``/255, default 4/255, ``--steps`` steps, random start from the
same seed) on the first ``--n`` embedded photos, attacking
``Defended(paper_defense(), efficientnet_lite0)`` through the harness's white-box target (true
gradient through the super-resolution, BPDA where a stage has
none), once with the super-resolution in fp32 during the attack and once in bf16
(``srdefense evaluate --attack-precision bf16``). Both sets of adversarial images are scored
the same way, with the defense in fp32, so only the gradient's precision differs. Printed:
robust accuracy for both, how many images the two attacks disagree on, and the attack time
ratio (bf16 / fp32, the two runs alternated ``--rounds`` times, best time kept).

Run: ``.venv/bin/python benchmarks/bench_bf16_attack.py [--n 8] [--steps 5] [--threads 2]``
"""

from __future__ import annotations

import argparse
import time

import torch

from srdefense import create_classifier, paper_defense
from srdefense.attacks import create_attack
from srdefense.data import collate, load_dataset
from srdefense.evaluation.threats import create_threat_model
from srdefense.purification.precision import bf16_is_fast, cpu_bf16_hardware, stage_precision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eps255", type=float, default=4.0, help="Linf budget in 1/255 units")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU bf16 features: {cpu_bf16_hardware()}; bf16 fast here: {bf16_is_fast('cpu')}", flush=True)
    ds = load_dataset("samples")
    x, y, _ = collate([ds[i] for i in range(min(args.n, len(ds)))])
    clf = create_classifier("efficientnet_lite0").eval()
    target = create_threat_model("white-box").target(paper_defense(), clf)
    attack = create_attack("pgd", eps=args.eps255 / 255, steps=args.steps)
    adv: dict[str, torch.Tensor] = {}
    best = {"fp32": float("inf"), "bf16": float("inf")}
    for _ in range(args.rounds):
        for p in ("fp32", "bf16"):
            gen = torch.Generator().manual_seed(args.seed)
            t0 = time.perf_counter()
            with stage_precision(target.module, p):
                adv[p] = attack(target.module, x, y, generator=gen)
            best[p] = min(best[p], time.perf_counter() - t0)
            print(f"    {p} gradients: attack {time.perf_counter() - t0:.1f} s", flush=True)
    correct = {}
    with torch.no_grad(), stage_precision(target.scorer, "fp32"):
        clean = target.scorer(x).argmax(1) == y
        for p in ("fp32", "bf16"):
            correct[p] = target.scorer(adv[p]).argmax(1) == y
    n = x.shape[0]
    print(
        f"white-box PGD-{args.steps} Linf {args.eps255:g}/255 through paper, {n} embedded photos, "
        f"seed {args.seed}, {args.threads} threads; scored in fp32"
    )
    print(f"    clean accuracy: {int(clean.sum())}/{n}")
    for p in ("fp32", "bf16"):
        print(f"    {p} gradients: robust accuracy {int(correct[p].sum())}/{n}, attack {best[p]:.1f} s")
    diff = int((correct["fp32"] != correct["bf16"]).sum())
    linf = float((adv["fp32"] - adv["bf16"]).abs().amax())
    print(f"    images where the two verdicts differ: {diff}/{n}; max |adv_fp32 - adv_bf16| {linf:.4f}")
    ratio = best["bf16"] / best["fp32"]
    print(f"    attack time bf16 / fp32: {ratio:.2f} (bf16 speed-up {1 / ratio:.2f}x)")


if __name__ == "__main__":
    main()
