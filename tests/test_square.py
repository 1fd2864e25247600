"""Tests of the Square Attack on small deterministic models (gradient-free, budget, schedule)."""

from __future__ import annotations

import copy

import pytest
import torch

import _eval_helpers
from _toy import Counting, NoGradNet, ToyNet, toy_batch
from srdefense.attacks import Square, create_attack, l2_norms
from srdefense.attacks.losses import margin
from srdefense.attacks.square import _bump, _eta, p_schedule

_one_thread = _eval_helpers._one_thread  # one intra-op thread for this module


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_reference_defaults():
    s = Square()
    assert (s.n_queries, s.p_init, s.restarts, s.loss, s.rescale_schedule) == (5000, 0.8, 1, "margin", False)
    assert (s.eps, s.norm) == (4 / 255, "linf")
    assert Square(norm="l2").eps == 3.0
    assert create_attack("square", n_queries=10).config()["n_queries"] == 10
    with pytest.raises(ValueError, match="p_init"):
        Square(p_init=0.0)
    with pytest.raises(ValueError, match="n_queries"):
        Square(n_queries=0)


def test_p_schedule_is_the_reference_one():
    # halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 iterations
    expected = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 201: 0.1, 501: 0.05, 1001: 0.025}
    for it, p in expected.items():
        assert p_schedule(it, 0.8) == pytest.approx(p)
    assert p_schedule(9000, 0.8) == pytest.approx(0.8 / 512)
    # rescaled to a 1000-query budget, iteration 100 is the reference's 1000
    assert p_schedule(100, 0.8, 1000) == pytest.approx(p_schedule(1000, 0.8))
    assert p_schedule(101, 0.8, 1000) == pytest.approx(p_schedule(1010, 0.8))


def test_l2_window_pattern():
    for s in (3, 5, 8, 9):
        eta = _eta(s, torch.zeros(1))
        assert eta.shape == (s, s)
        assert eta.norm().item() == pytest.approx(1.0)
        assert (eta[: s // 2] > 0).all() and (eta[s // 2 :] < 0).all()  # two bumps of opposite sign
    b = _bump(5, 5, torch.zeros(1, dtype=torch.float64))
    # rings at Chebyshev distance 0, 1, 2: 1 + 1/4 + 1/9, 1/4 + 1/9, 1/9, normalised
    ring = torch.tensor([1 + 1 / 4 + 1 / 9, 1 / 4 + 1 / 9, 1 / 9], dtype=torch.float64)
    assert b[2, 2] / b[0, 0] == pytest.approx((ring[0] / ring[2]).item())
    assert b[1, 2] / b[0, 0] == pytest.approx((ring[1] / ring[2]).item())


@pytest.mark.parametrize("norm,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_needs_no_gradient_respects_the_budget_and_succeeds(norm, eps):
    model = NoGradNet(ToyNet())  # any backward pass raises
    x, y = toy_batch(6)
    x0 = x.clone()
    adv = Square(eps=eps, norm=norm, n_queries=300, seed=0)(model, x, y)
    assert torch.equal(x, x0) and adv.min() >= 0 and adv.max() <= 1
    if norm == "linf":
        assert (adv.double() - x.double()).abs().max().item() <= eps
    else:
        assert l2_norms(adv.double() - x.double()).max().item() <= eps * (1 + 1e-6)
    with torch.no_grad():
        assert (model(adv).argmax(1) != y).sum() >= 3


@pytest.mark.parametrize("norm,eps", [("linf", 1 / 255), ("l2", 0.05)])
def test_margin_never_grows_and_query_budget_holds(norm, eps):
    """The search keeps the best point: the margin of the result is <= the clean one; and no row
    is evaluated more than 1 (clean check) + n_queries times."""
    net = ToyNet()
    model = Counting(net)
    x, y = toy_batch(6)
    n_queries = 40
    adv = Square(eps=eps, norm=norm, n_queries=n_queries, seed=0)(model, x, y)
    assert model.images <= x.shape[0] * (1 + n_queries)
    with torch.no_grad():
        m_clean, m_adv = margin(net(x), y), margin(net(adv), y)
    assert (m_adv <= m_clean + 1e-6).all() and (m_adv < m_clean).any()


def test_only_robust_rows_are_queried():
    net = ToyNet()
    x, y = toy_batch(4)
    y_wrong = y.clone()
    y_wrong[:2] = (y[:2] + 1) % 10  # two rows already misclassified: never attacked
    model = Counting(net)
    adv = Square(eps=1 / 255, n_queries=20, seed=0)(model, x, y_wrong)
    assert torch.equal(adv[:2], x[:2])
    assert model.images <= 4 + 2 * 20


def test_same_seed_same_result_and_no_side_effects():
    model = ToyNet()
    x, y = toy_batch(4)
    for norm in ("linf", "l2"):
        a = Square(eps=2 / 255 if norm == "linf" else 0.2, norm=norm, n_queries=15)
        r1 = a(model, x, y, generator=_gen(1))
        assert torch.equal(r1, a(model, x, y, generator=_gen(1)))
        assert not torch.equal(r1, a(model, x, y, generator=_gen(2)))
    m = copy.deepcopy(model).train(True)
    Square(n_queries=3, seed=0)(m, x, y)
    assert m.training and all(p.grad is None for p in m.parameters())


def test_targeted_square_reaches_the_target():
    model = ToyNet()
    x, y = toy_batch(4)
    t = (y + 1) % 10
    adv = Square(eps=16 / 255, n_queries=300, seed=0)(model, x, y, target_labels=t)
    with torch.no_grad():
        assert (model(adv).argmax(1) == t).float().mean() >= 0.5
