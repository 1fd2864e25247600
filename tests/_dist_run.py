"""A small evaluation run by the sharding tests, in the test process or as a torchrun rank.

``python -m torch.distributed.run --nproc-per-node 2 tests/_dist_run.py OUT SETTING [--resume]
[--workers N] [--kill-rank R]`` evaluates 12 of the embedded photos (16 px, relabelled by the
tiny classifier so that accuracies are neither 0 nor 1) with two deterministic defenses and a
randomised one. With ``--kill-rank R`` rank ``R`` sends itself SIGKILL after its first batch.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from _eval_helpers import TinyNet
from srdefense.data import load_dataset
from srdefense.evaluation import evaluate
from srdefense.purification import Identity, Lambda, Purifier

N_IMAGES = 12
SIZE = 16
BATCH = 2


class Noise(Purifier):
    """A randomised purifier drawing from its generator."""

    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        n = torch.randn(x.shape, generator=self.generator, device=x.device)
        return (x + 0.05 * n).clamp(0, 1)


@dataclass(frozen=True)
class _Item:
    id: str
    image: Tensor
    label: int
    error: Exception | None = None


class Relabeled:
    """An image dataset whose labels are the tiny classifier's predictions (a few shifted)."""

    def __init__(self, ds: Any, labels: list[int]) -> None:
        self.ds = ds
        self.labels = labels
        self.ids = ds.ids

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> _Item:
        s = self.ds[i]
        return _Item(s.id, s.image, self.labels[i])


def build_data(model: nn.Module) -> Relabeled:
    ds = load_dataset("samples", size=SIZE, n=N_IMAGES, seed=0)
    with torch.no_grad():
        preds = model(torch.stack([ds[i].image for i in range(len(ds))])).argmax(1).tolist()
    labels = [(p + 1) % 4 if i % 5 == 0 else p for i, p in enumerate(preds)]
    return Relabeled(ds, labels)


def defenses() -> dict[str, Purifier]:
    blur = Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), name="blur")
    return {"none": Identity(), "blur": blur, "noise": Noise()}


def run(out: str | Path, setting: str, *, resume: bool = False, workers: int = 0, **kw: Any) -> Any:
    """The evaluation of the tests (gray-box or white-box), into ``out``."""
    model = TinyNet().eval()
    attacks = ["fgsm", "pgd:steps=3"]
    return evaluate(
        model,
        defenses(),
        attacks,
        build_data(model),
        eps=[8 / 255],
        setting=setting,
        eot_samples=2,
        eval_draws=2,
        batch_size=BATCH,
        out=out,
        resume=resume,
        workers=workers,
        n_examples=2,
        report=True,
        **kw,
    )


def main(argv: list[str]) -> None:
    out, setting = argv[0], argv[1]
    rest = argv[2:]
    resume = "--resume" in rest
    workers = int(rest[rest.index("--workers") + 1]) if "--workers" in rest else 0
    kill = int(rest[rest.index("--kill-rank") + 1]) if "--kill-rank" in rest else None
    progress = None
    if kill is not None and int(os.environ.get("RANK", "0")) == kill:

        def progress(ev: Any) -> None:
            if ev.stage == "batch":
                os.kill(os.getpid(), signal.SIGKILL)

    torch.set_num_threads(1)
    run(out, setting, resume=resume, workers=workers, progress=progress)


if __name__ == "__main__":
    import _dist_run  # the classes as `_dist_run.*` (not `__main__.*`): the run id names them

    _dist_run.main(sys.argv[1:])
