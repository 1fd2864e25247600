"""Per-image random draws: a generator bank gives a batch exactly each image's draws alone."""

from __future__ import annotations

import pytest
import torch

from srdefense._random import GeneratorBank, rand, randint
from srdefense.purification.randomized import PixelDeflection, RandomResizePad
from srdefense.purification.tvm import TotalVarianceMinimization


def _images(n: int = 3, size: int = 20) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return torch.rand(n, 3, size, size, generator=g, dtype=torch.float64)


def _bank(seeds: list[int]) -> GeneratorBank:
    return GeneratorBank([torch.Generator().manual_seed(s) for s in seeds])


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomResizePad(),
        lambda: PixelDeflection(deflections=30, window=3),
        lambda: TotalVarianceMinimization(iterations=5),
    ],
    ids=["random-resize-pad", "pixel-deflection", "tvm"],
)
def test_bank_batch_equals_each_image_alone(make) -> None:
    x = _images()
    seeds = [11, 12, 13]
    d = make()
    assert d.per_sample_draws and d.randomized
    d.generator = _bank(seeds)
    batched = d(x)
    alone = []
    for i, s in enumerate(seeds):
        d.generator = torch.Generator().manual_seed(s)
        alone.append(d(x[i : i + 1]))
    # float64: batched and single-image kernels agree to rounding, the draws exactly
    torch.testing.assert_close(batched, torch.cat(alone), rtol=0, atol=1e-12)
    # and the draws matter: another seed for image 1 changes image 1 only
    d.generator = _bank([11, 99, 13])
    other = d(x)
    torch.testing.assert_close(other[0], batched[0], rtol=0, atol=1e-12)
    assert not torch.allclose(other[1], batched[1])


def test_bank_draws_rows_from_their_own_generator() -> None:
    u = rand((4, 2), _bank([1, 2]), torch.device("cpu"))
    ref = torch.cat([torch.rand(2, 2, generator=torch.Generator().manual_seed(s)) for s in (1, 2)])
    assert torch.equal(u, ref)
    k = randint(0, 10, (2, 5), _bank([3, 4]), torch.device("cpu"))
    ref_k = torch.cat(
        [randint(0, 10, (1, 5), torch.Generator().manual_seed(s), torch.device("cpu")) for s in (3, 4)]
    )
    assert torch.equal(k, ref_k)


def test_bank_refuses_a_draw_that_does_not_split_by_image() -> None:
    with pytest.raises(ValueError, match=r"shape \(3,\) does not split into 2 images"):
        rand((3,), _bank([1, 2]), torch.device("cpu"))
    with pytest.raises(ValueError, match="at least one generator"):
        GeneratorBank([])


class _Double(torch.nn.Module):
    """Computes in float64 whatever comes in (the classifier probe sends float32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


def test_batched_scoring_of_draws_equals_one_pass_per_sample(monkeypatch) -> None:
    """The evaluation's batched scoring of a randomised defense gives the per-sample numbers."""
    from _eval_helpers import TinyNet
    from srdefense.evaluation import evaluate, scoring
    from srdefense.purification.compose import Defended

    g = torch.Generator().manual_seed(2)
    x = torch.rand(6, 3, 16, 16, generator=g, dtype=torch.float64)
    net = TinyNet().double()
    model = torch.nn.Sequential(_Double(), net)
    with torch.no_grad():
        y = model(x).argmax(1)
    kw = dict(
        eps=[4 / 255],
        setting=["gray-box", "white-box"],
        adaptive_attacks=["pgd:steps=2"],
        eot_samples=2,
        eval_draws=3,
        card=False,
        batch_size=4,
    )
    defenses = {"rrp": "random-resize-pad", "pd": "pixel-deflection:deflections=20:window=3"}
    calls = {"n": 0}
    orig = Defended.purify_and_classify

    def counting(self, images):  # noqa: ANN001, ANN202
        calls["n"] += images.shape[0] > 0
        return orig(self, images)

    monkeypatch.setattr(Defended, "purify_and_classify", counting)
    batched = evaluate(model, defenses, ["fgsm"], (x, y), **kw)
    n_batched, calls["n"] = calls["n"], 0
    monkeypatch.setattr(scoring, "batched_draws", lambda module: False)
    alone = evaluate(model, defenses, ["fgsm"], (x, y), **kw)
    # per randomised defense and kind (clean, gray-box fgsm, white-box pgd): 3 draws per batch
    # (2 batches) against 3 draws per sample (6 samples); plus the same few example passes
    assert calls["n"] - n_batched == 2 * 3 * (3 * 6 - 3 * 2)
    assert [r.to_json() for r in batched.records] == [r.to_json() for r in alone.records]
    assert batched.summary == alone.summary
