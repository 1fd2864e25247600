"""Tests of APGD (APGD-CE, APGD-DLR, APGD-T) on small deterministic models.

The cross-checks against torchattacks on the embedded classifier are in test_autoattack.py.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import Tensor, nn

import _eval_helpers
from _toy import NoGradNet, ToyNet, toy_batch
from srdefense.attacks import APGDCE, APGDDLR, APGDT, EOT, create_attack, l2_norms
from srdefense.attacks.apgd import APGD, checkpoints
from srdefense.attacks.losses import objective

_one_thread = _eval_helpers._one_thread  # one intra-op thread for this module


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _loss(model: nn.Module, v: Tensor, y: Tensor, name: str = "ce") -> Tensor:
    with torch.no_grad():
        return objective(name, model(v), y)


def test_checkpoint_schedule_is_the_reference_one():
    # first check after 0.22 N, intervals shrinking by 0.03 N down to 0.06 N
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [1]


def test_reference_defaults_and_config():
    a = APGDCE()
    assert (a.steps, a.restarts, a.rho, a.momentum, a.eps, a.norm) == (100, 1, 0.75, 0.75, 4 / 255, "linf")
    assert APGDCE(norm="l2").eps == 3.0 and APGDCE(norm="l2").norm == "l2"
    assert APGDDLR().loss == "dlr" and APGDCE().loss == "ce"
    t = APGDT()
    assert (t.n_target_classes, t.steps, t.restarts, t.loss) == (9, 100, 1, "dlr")
    for name in ("apgd-ce", "apgd-dlr", "apgd-t"):
        cfg = create_attack(name, norm="l2", eps=0.5).config()
        assert json.loads(json.dumps(cfg)) == cfg and cfg["name"] == name and cfg["distance"] == "l2"
    assert "eot_samples" not in APGDCE().config()
    assert APGDCE(eot_samples=5).config()["eot_samples"] == 5
    with pytest.raises(ValueError, match="norm"):
        APGDCE(norm="l1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rho"):
        APGDCE(rho=0.0)
    with pytest.raises(ValueError, match="steps"):
        APGDCE(steps=0)
    with pytest.raises(ValueError, match="eot_samples"):
        APGDCE(eot_samples=0)
    with pytest.raises(ValueError, match="n_target_classes"):
        APGDT(n_target_classes=0)
    with pytest.raises(ValueError, match="loss"):
        APGD(loss="hinge")
    with pytest.raises(TypeError):
        APGDT(target="random")  # type: ignore[call-arg]  # APGD-T chooses its own targets


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
@pytest.mark.parametrize("cls", [APGDCE, APGDDLR, APGDT])
def test_budget_is_respected_and_the_attack_works(cls, norm, eps):
    model = ToyNet()
    x, y = toy_batch(6)
    a = cls(eps=eps, norm=norm, steps=10, seed=0, **({"n_target_classes": 3} if cls is APGDT else {}))
    adv = a(model, x, y)
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.min() >= 0 and adv.max() <= 1
    if norm == "linf":
        assert (adv.double() - x.double()).abs().max().item() <= eps
    else:
        assert l2_norms(adv.double() - x.double()).max().item() <= eps * (1 + 1e-6)
    with torch.no_grad():
        assert (model(adv).argmax(1) != y).sum() >= 3  # the toy model is easy to fool at this budget


def test_no_side_effects():
    model = ToyNet()
    x, y = toy_batch(4)
    x0, y0 = x.clone(), y.clone()
    for training in (False, True):
        m = copy.deepcopy(model).train(training)
        adv = APGDCE(eps=4 / 255, steps=5, seed=0)(m, x, y)
        assert m.training is training and all(p.grad is None for p in m.parameters())
        assert torch.equal(x, x0) and torch.equal(y, y0) and not adv.requires_grad


@pytest.mark.parametrize("norm,eps", [("linf", 1 / 255), ("l2", 0.05)])
def test_best_point_is_returned_not_the_last_iterate(norm, eps):
    """Unfooled rows: the returned point has the highest loss of the run (>= the last iterate)."""
    model = ToyNet()
    x, y = toy_batch(8)
    a = APGDCE(eps=eps, norm=norm, steps=12)
    run = a.run_once(model, x, y, generator=_gen(3))
    assert (~run.fooled).sum() >= 3  # a small budget leaves rows unfooled
    torch.testing.assert_close(_loss(model, run.best, y), run.best_loss)
    assert (run.best_loss >= run.last_loss).all()
    assert (run.best_loss > run.last_loss).any()  # the check is not vacuous: the last iterate is worse
    with torch.no_grad():
        assert (model(run.adv[run.fooled]).argmax(1) != y[run.fooled]).all()
    # the public call makes the same draws (one clean forward pass first, no draw)
    adv = a(model, x, y, generator=_gen(3))
    keep = ~run.fooled
    assert (_loss(model, adv, y)[keep] >= run.last_loss[keep] - 1e-5).all()
    torch.testing.assert_close(adv, run.adv, rtol=0, atol=1e-6)


def test_step_size_is_halved_when_the_loss_stalls():
    model = ToyNet()
    x, y = toy_batch(4)
    eps = 2 / 255
    run = APGDCE(eps=eps, steps=20).run_once(model, x, y, generator=_gen(0))
    # steps are 2 eps / 2^k
    ratio = torch.log2(2 * eps / run.step_size)
    torch.testing.assert_close(ratio, ratio.round(), rtol=0, atol=1e-5)
    assert (run.step_size < 2 * eps).any()


def test_same_seed_same_result():
    model = ToyNet()
    x, y = toy_batch(4)
    a = APGDDLR(eps=4 / 255, steps=5)
    r1 = a(model, x, y, generator=_gen(1))
    assert torch.equal(r1, a(model, x, y, generator=_gen(1)))
    assert not torch.equal(r1, a(model, x, y, generator=_gen(2)))
    assert torch.equal(APGDDLR(eps=4 / 255, steps=5, seed=1)(model, x, y), r1)
    assert not a.deterministic


class _FixedStart(APGDCE):
    """APGD-CE with a start that depends on each row only (for the batch-independence check)."""

    def _start(self, x: Tensor, gen: torch.Generator | None) -> Tensor:
        assert self.eps is not None
        pattern = torch.sin(torch.arange(x[0].numel(), dtype=x.dtype) * 0.37).reshape(x.shape[1:])
        if self.distance == "l2":
            pattern = pattern / pattern.norm() * self.eps
        else:
            pattern = pattern.sign() * self.eps
        return (x + pattern).clamp(0, 1)


@pytest.mark.parametrize("norm,eps", [("linf", 2 / 255), ("l2", 0.1)])
def test_row_alone_equals_row_in_batch_float64(norm, eps):
    """Per-sample state (step sizes, checkpoints, best points): a row alone gives its row of the batch.

    In float64 the batched and single-row kernels agree to ~1e-16, far from any sign decision.
    """
    model = ToyNet(dtype=torch.float64)
    x, y = toy_batch(5, dtype=torch.float64)
    a = _FixedStart(eps=eps, norm=norm, steps=10)
    batch = a.run_once(model, x, y)
    for i in range(5):
        alone = a.run_once(model, x[i : i + 1], y[i : i + 1])
        torch.testing.assert_close(alone.adv[0], batch.adv[i], rtol=0, atol=1e-10)
        torch.testing.assert_close(alone.step_size[0], batch.step_size[i], rtol=0, atol=0)


def test_apgd_t_targets_the_highest_wrong_classes():
    model = ToyNet()
    x, y = toy_batch(4)
    seen: list[Tensor] = []

    class Spy(APGDT):
        def run_once(self, model, x, y, *, loss_targets=None, **kw):  # type: ignore[override]
            seen.append(loss_targets.clone())
            return super().run_once(model, x, y, loss_targets=loss_targets, **kw)

    Spy(eps=0.1 / 255, steps=2, n_target_classes=3, seed=0)(model, x, y)
    with torch.no_grad():
        z = model(x)
    ranked = z.scatter(1, y[:, None], -torch.inf).argsort(1, descending=True)
    assert len(seen) == 3  # nothing is fooled at this tiny budget: every target class runs on all rows
    for j, t in enumerate(seen):
        assert torch.equal(t, ranked[:, j]) and (t != y).all()
    with pytest.raises(ValueError, match="at least 4 classes"):
        three = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 3))
        APGDT(steps=1)(three, x, torch.zeros(4, dtype=torch.long))


def test_restarts_run_only_on_the_still_robust_rows():
    model = ToyNet()
    x, y = toy_batch(6)
    sizes: list[int] = []

    class Spy(APGDCE):
        def run_once(self, model, x, y, **kw):  # type: ignore[override]
            sizes.append(x.shape[0])
            return super().run_once(model, x, y, **kw)

    Spy(eps=2 / 255, steps=5, restarts=3, seed=0)(model, x, y)
    assert sizes[0] == 6 and all(b <= a for a, b in zip(sizes, sizes[1:], strict=False))


def test_targeted_apgd_reaches_the_target():
    model = ToyNet()
    x, y = toy_batch(4)
    t = (y + 1) % 10
    adv = APGDCE(eps=16 / 255, steps=20, seed=0)(model, x, y, target_labels=t)
    with torch.no_grad():
        assert (model(adv).argmax(1) == t).float().mean() >= 0.75


def test_eot_samples_equals_an_explicit_eot_wrapper():
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = ToyNet()

        def forward(self, v: Tensor) -> Tensor:
            return self.net((v + 0.05 * torch.randn_like(v)).clamp(0, 1))

    model = Noisy()
    x, y = toy_batch(3)
    torch.manual_seed(7)
    a = APGDCE(eps=4 / 255, steps=3, eot_samples=3)(model, x, y, generator=_gen(0))
    torch.manual_seed(7)
    b = APGDCE(eps=4 / 255, steps=3)(EOT(model, n=3), x, y, generator=_gen(0))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="already an EOT wrapper"):
        APGDCE(eot_samples=2)(EOT(model, n=2), x, y)


def test_apgd_needs_gradients():
    """The gradient-free test model really refuses a backward pass (used by the Square tests)."""
    x, y = toy_batch(2)
    with pytest.raises(RuntimeError, match="no gradient"):
        APGDCE(steps=1)(NoGradNet(ToyNet()), x, y)
