"""PGD's early stopping: the first adversarial iterate of each sample, fewer forward passes."""

from __future__ import annotations

import pytest
import torch
from tests._toy import Counting, ToyNet, toy_batch

from srdefense.attacks import EOT
from srdefense.attacks.gradient import L2PGD, PGD, _fooled


def _all_iterates(attack: PGD, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> list:
    """Every iterate x_0 .. x_steps of the full loop, replayed step by step (steps=k runs)."""
    out = []
    for k in range(1, attack.steps + 1):
        a = type(attack)(eps=attack.eps, alpha=attack.alpha, steps=k, seed=seed)
        out.append(a(model, x, y))
    return out


@pytest.mark.parametrize("cls", [PGD, L2PGD])
def test_early_stop_never_loses_an_adversarial_example(cls) -> None:
    x, y = toy_batch(16, seed=3, dtype=torch.float64)
    model = ToyNet(dtype=torch.float64)
    eps = 0.005 if cls is PGD else 0.05  # some samples fooled, some not
    full = cls(eps=eps, steps=6, seed=1)
    early = cls(eps=eps, steps=6, seed=1, early_stop=True)
    counted = Counting(model)
    adv_full = full(counted, x, y)
    n_full, counted.images = counted.images, 0
    adv_early = early(counted, x, y)
    n_early = counted.images
    with torch.no_grad():
        fooled_full = model(adv_full).argmax(1) != y
        fooled_early = model(adv_early).argmax(1) != y
    # every sample the full loop fools, the early-stopped one fools too, and some stop early
    assert bool((fooled_early | ~fooled_full).all())
    assert x.shape[0] > fooled_early.sum() >= fooled_full.sum() > 0
    assert n_early < n_full
    # a sample never fooled before the last step follows the very same trajectory
    same = (adv_early - adv_full).flatten(1).abs().amax(1) <= 1e-12
    assert bool(same[~fooled_early].all())
    # and a sample that stopped early was left where it was first fooled, not at the end
    assert not bool(same[fooled_early].all())
    # and the bound holds
    if cls is PGD:
        assert float((adv_early - x).abs().max()) <= eps + 1e-12
    else:
        assert float((adv_early - x).flatten(1).norm(dim=1).max()) <= eps + 1e-9


def test_early_stop_returns_the_first_adversarial_iterate() -> None:
    x, y = toy_batch(12, seed=4, dtype=torch.float64)
    model = ToyNet(dtype=torch.float64)
    attack = PGD(eps=0.03, steps=5, seed=2, early_stop=True)
    adv = attack(model, x, y)
    # x_t = the iterate after t steps; the random start x_0 is steps=... replayed by a 0-step
    start = PGD(eps=0.03, steps=1, alpha=0.0, seed=2)(model, x, y)
    iterates = [start, *_all_iterates(PGD(eps=0.03, steps=5, seed=2), model, x, y, seed=2)]
    with torch.no_grad():
        flags = [_fooled(model(it), y, None) for it in iterates[:-1]]
    for i in range(x.shape[0]):
        first = next((t for t, f in enumerate(flags) if bool(f[i])), None)
        expect = iterates[-1][i] if first is None else iterates[first][i]
        torch.testing.assert_close(adv[i], expect, rtol=0, atol=1e-12)


def test_early_stop_is_ignored_for_an_eot_model() -> None:
    x, y = toy_batch(6, seed=5)
    model = EOT(ToyNet(), n=2)
    a = PGD(eps=0.03, steps=3, seed=0, early_stop=True)(model, x, y)
    b = PGD(eps=0.03, steps=3, seed=0)(model, x, y)
    assert torch.equal(a, b)


def test_fooled_needs_a_margin() -> None:
    logits = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [3.0, 0.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    # a tie is not fooled, a clear win of another class is, the true class leading is not
    assert _fooled(logits, y, None).tolist() == [False, True, False]
    # targeted: the target must lead
    assert _fooled(logits, y, torch.tensor([1, 1, 1])).tolist() == [False, True, False]
