"""APGD, APGD-T and Square against torchattacks 3.5.1: robust counts and time ratio, same run.

The settings of the parity tests (tests/test_autoattack.py), every shared one set explicitly on
both sides: the 20 embedded photos at 96x96, EfficientNet-Lite0, one thread. Prints, per attack,
the robust count of ours and of torchattacks and the wall-time ratio ours / theirs (both measured
in this run, so the ratio stays meaningful on a busy machine).

Run: ``.venv/bin/python benchmarks/bench_attacks_parity.py``
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from srdefense.attacks import APGDCE, APGDDLR, APGDT, PGD, Square
from srdefense.data import collate, load_dataset
from srdefense.models import create_classifier


def main() -> None:
    from torchattacks.attacks.apgd import APGD as TaAPGD
    from torchattacks.attacks.apgdt import APGDT as TaAPGDT
    from torchattacks.attacks.square import Square as TaSquare

    torch.set_num_threads(1)
    m = create_classifier("efficientnet_lite0")
    ds = load_dataset("samples")
    x, y, _ = collate([ds[i] for i in range(len(ds))])
    x = F.interpolate(x, size=(96, 96), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)

    def robust(a: Tensor) -> int:
        with torch.no_grad():
            return int((m(a).argmax(1) == y).sum())

    def timed(f: Callable[[], Tensor]) -> tuple[int, float]:
        t = time.perf_counter()
        adv = f()
        return robust(adv), time.perf_counter() - t

    e = 0.1 / 255
    sq = dict(n_queries=50, p_init=0.8, restarts=1, loss="margin", rescale_schedule=False, seed=0)
    ta_sq = dict(n_queries=50, n_restarts=1, p_init=0.8, loss="margin", resc_schedule=False, seed=0)
    ta_apgd = dict(n_restarts=1, seed=0, rho=0.75)
    rows: list[tuple[str, Callable[[], Tensor], Callable[[], Tensor]]] = [
        (
            "APGD-CE  Linf 0.1/255, 10 it",
            lambda: APGDCE(eps=e, steps=10, restarts=1, rho=0.75, seed=0)(m, x, y),
            lambda: TaAPGD(m, norm="Linf", eps=e, steps=10, loss="ce", **ta_apgd)(x, y),
        ),
        (
            "APGD-DLR L2 0.05, 10 it",
            lambda: APGDDLR(eps=0.05, norm="l2", steps=10, restarts=1, rho=0.75, seed=0)(m, x, y),
            lambda: TaAPGD(m, norm="L2", eps=0.05, steps=10, loss="dlr", **ta_apgd)(x, y),
        ),
        (
            "APGD-T   Linf 0.1/255, 8 it, 2 targets",
            lambda: APGDT(eps=e, steps=8, restarts=1, n_target_classes=2, rho=0.75, seed=0)(m, x, y),
            lambda: TaAPGDT(m, norm="Linf", eps=e, steps=8, n_classes=3, **ta_apgd)(x, y),
        ),
        (
            "Square   Linf 4/255, 50 queries",
            lambda: Square(eps=4 / 255, **sq)(m, x, y),
            lambda: TaSquare(m, norm="Linf", eps=4 / 255, **ta_sq)(x, y),
        ),
        (
            "Square   L2 1.0, 50 queries",
            lambda: Square(eps=1.0, norm="l2", **sq)(m, x, y),
            lambda: TaSquare(m, norm="L2", eps=1.0, **ta_sq)(x, y),
        ),
    ]
    print(f"clean: {robust(x)}/20 correct")
    for name, ours, theirs in rows:
        (r_o, t_o), (r_t, t_t) = timed(ours), timed(theirs)
        ratio = t_o / t_t
        print(f"{name:40s} robust ours {r_o:2d}/20  torchattacks {r_t:2d}/20  time ours/theirs {ratio:.2f}")
    r_p, _ = timed(lambda: PGD(eps=e, steps=10, seed=0)(m, x, y))
    print(f"{'PGD      Linf 0.1/255, 10 it':40s} robust {r_p:2d}/20")


if __name__ == "__main__":
    main()
