"""Tests of srdefense.attacks.losses: values against hand computations, invariances, signs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from srdefense.attacks.losses import (
    LOSSES,
    cross_entropy,
    dlr,
    dlr_targeted,
    fooled,
    margin,
    objective,
)

# two samples, five classes; sorted logits of row 0: 3 > 2 > 1 > 0 > -1 (true class 0 has 2)
Z = torch.tensor([[2.0, 3.0, 0.0, 1.0, -1.0], [4.0, 0.5, 1.5, -2.0, 1.0]], dtype=torch.float64)
Y = torch.tensor([0, 0])


def test_margin_by_hand():
    # row 0: z_y = 2, best other = 3 -> -1; row 1: z_y = 4, best other = 1.5 -> 2.5
    torch.testing.assert_close(margin(Z, Y), torch.tensor([-1.0, 2.5], dtype=torch.float64))


def test_dlr_by_hand():
    # row 0: -(2 - 3) / (3 - 1) = 0.5 (misclassified: positive)
    # row 1: sorted 4, 1.5, 1 -> -(4 - 1.5) / (4 - 1) = -2.5 / 3
    expected = torch.tensor([0.5, -2.5 / 3], dtype=torch.float64)
    torch.testing.assert_close(dlr(Z, Y), expected, rtol=0, atol=1e-11)
    assert (dlr(Z, Y) > 0).tolist() == fooled(Z, Y).tolist()


def test_targeted_dlr_by_hand():
    t = torch.tensor([3, 2])
    # row 0: -(2 - 1) / (3 - (1 + 0) / 2) = -1 / 2.5; row 1: -(4 - 1.5) / (4 - (1 + 0.5) / 2)
    expected = torch.tensor([-1 / 2.5, -2.5 / 3.25], dtype=torch.float64)
    torch.testing.assert_close(dlr_targeted(Z, Y, t), expected, rtol=0, atol=1e-11)


def test_cross_entropy_matches_torch_and_objective_signs():
    t = torch.tensor([3, 2])
    torch.testing.assert_close(cross_entropy(Z, Y), F.cross_entropy(Z, Y, reduction="none"))
    torch.testing.assert_close(objective("ce", Z, Y), cross_entropy(Z, Y))
    torch.testing.assert_close(objective("ce", Z, Y, t), -cross_entropy(Z, t))
    torch.testing.assert_close(objective("dlr", Z, Y), dlr(Z, Y))
    torch.testing.assert_close(objective("dlr", Z, Y, t), dlr_targeted(Z, Y, t))
    torch.testing.assert_close(objective("margin", Z, Y), -margin(Z, Y))
    torch.testing.assert_close(objective("margin", Z, Y, t), margin(Z, t))
    assert fooled(Z, Y, t).tolist() == [False, False]
    assert fooled(Z, Y, torch.tensor([1, 0])).tolist() == [True, True]
    assert set(LOSSES) == {"ce", "dlr", "margin"}


def test_dlr_is_invariant_to_shift_and_positive_scale():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (6,), generator=g)
    t = (y + 1) % 10
    for f in (lambda v: dlr(v, y), lambda v: dlr_targeted(v, y, t)):
        torch.testing.assert_close(f(z * 7.5 + 3.0), f(z), rtol=1e-9, atol=1e-9)
    # cross-entropy and margin are not scale invariant (the reason DLR exists)
    assert not torch.allclose(margin(z * 7.5, y), margin(z, y))


def test_rows_are_independent_of_the_batch():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(5, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 8, (5,), generator=g)
    t = (y + 3) % 8
    for name in LOSSES:
        full = objective(name, z, y, t)
        for i in range(5):
            assert objective(name, z[i : i + 1], y[i : i + 1], t[i : i + 1]).item() == full[i].item()


def test_gradient_flows_and_flat_logits_stay_finite():
    z = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    v = dlr(z, Y)
    assert torch.isfinite(v).all()
    z2 = Z.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(dlr(z2, Y).sum(), [z2])
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 4 classes"):
        dlr_targeted(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), torch.ones(2, dtype=torch.long))
    with pytest.raises(ValueError, match="labels"):
        margin(torch.zeros(2, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="expected one of ce, dlr, margin"):
        objective("hinge", Z, Y)
    assert math.isclose(margin(Z, Y)[1].item(), 2.5)
