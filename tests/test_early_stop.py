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


class _Passes(torch.nn.Module):
    """Counts its forward passes and the backward passes that reach its input."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.forwards = 0
        self.backwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards += 1
        if x.requires_grad:
            x.register_hook(self._count)
        return self.model(x)

    def _count(self, g: torch.Tensor) -> None:
        self.backwards += 1


def test_value_and_grad_skips_the_backward_pass_no_row_needs() -> None:
    from srdefense.attacks.base import value_and_grad

    x, y = toy_batch(5, seed=6, dtype=torch.float64)
    model = _Passes(ToyNet(dtype=torch.float64))

    def fn(m: torch.nn.Module, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = m(v)
        return torch.nn.functional.cross_entropy(z, y, reduction="none"), z

    loss_ref, logits_ref, g_ref = value_and_grad(model, x, fn)
    assert (model.forwards, model.backwards) == (1, 1)
    # some rows needed: the very same gradient
    some = torch.tensor([True, False, True, False, False])
    loss, logits, g = value_and_grad(model, x, fn, lambda z: some)
    assert (model.forwards, model.backwards) == (2, 2)
    assert torch.equal(g, g_ref) and torch.equal(loss, loss_ref) and torch.equal(logits, logits_ref)
    # none needed: no backward pass, zeros, the same loss and logits
    loss, logits, g = value_and_grad(model, x, fn, lambda z: torch.zeros(5, dtype=torch.bool))
    assert (model.forwards, model.backwards) == (3, 2)
    assert torch.equal(g, torch.zeros_like(x))
    assert torch.equal(loss, loss_ref) and torch.equal(logits, logits_ref)


def test_early_stop_runs_no_backward_pass_once_the_whole_batch_is_fooled(monkeypatch) -> None:
    import srdefense.attacks.gradient as gradient_module

    x, y = toy_batch(8, seed=7, dtype=torch.float64)
    model = ToyNet(dtype=torch.float64)
    attack = PGD(eps=0.2, steps=10, seed=3, early_stop=True)
    passes = _Passes(model)
    adv = attack(passes, x, y)
    with torch.no_grad():
        assert bool(_fooled(model(adv), y, None).all())  # all fooled before the last step
    # every forward pass but the one that found the last rows fooled was followed by a backward
    assert passes.forwards < attack.steps
    assert passes.backwards == passes.forwards - 1
    # and skipping it changed nothing: the result of the loop that always runs the backward pass
    orig = gradient_module.value_and_grad
    monkeypatch.setattr(gradient_module, "value_and_grad", lambda m, v, fn, needed=None: orig(m, v, fn))
    always = _Passes(model)
    torch.testing.assert_close(attack(always, x, y), adv, rtol=0, atol=0)
    assert always.backwards == always.forwards == passes.forwards
