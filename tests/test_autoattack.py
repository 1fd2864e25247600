"""AutoAttack ensembles (toy models) and the cross-checks of APGD, APGD-T and Square against
torchattacks 3.5.1 on the embedded classifier and photos, with identical settings.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import _eval_helpers
from _toy import Quantised, ToyNet, toy_batch
from srdefense.attacks import (
    APGDCE,
    APGDDLR,
    APGDT,
    EOT,
    PGD,
    AutoAttack,
    AutoAttackRand,
    Square,
    create_attack,
    l2_norms,
    list_attacks,
)
from srdefense.attacks.autoattack import CLEAN
from srdefense.data import collate, load_dataset
from srdefense.models import create_classifier

NEW = ["apgd-ce", "apgd-dlr", "apgd-t", "autoattack", "autoattack-rand", "square"]


_one_thread = _eval_helpers._one_thread  # one intra-op thread for this module


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- registry, defaults
def test_registered_with_reference_defaults():
    assert set(NEW) <= {a.name for a in list_attacks()}
    for name in NEW:
        a = create_attack(name)
        cfg = a.config()
        assert a.name == name and json.loads(json.dumps(cfg)) == cfg
        assert a.norm == "linf" and a.eps == 4 / 255 and not a.deterministic
        b = create_attack(name, norm="l2", eps=0.5)
        assert b.norm == "l2" and b.distance == "l2" and b.config() != cfg
    aa = AutoAttack()
    comps = aa.components()
    assert [c.name for c in comps] == ["apgd-ce", "apgd-t", "square"]
    ce, t, sq = comps
    assert isinstance(ce, APGDCE) and isinstance(t, APGDT) and isinstance(sq, Square)
    assert (ce.steps, ce.restarts, t.steps, t.n_target_classes, sq.n_queries, sq.p_init) == (
        100,
        1,
        100,
        9,
        5000,
        0.8,
    )
    assert all(c.eot_samples == 1 for c in comps)  # the ensemble wraps the model once
    assert all(c.norm == "l2" and c.eps == 0.5 for c in AutoAttack(norm="l2", eps=0.5).components())
    rand = AutoAttackRand()
    assert [c.name for c in rand.components()] == ["apgd-ce", "apgd-dlr"]
    assert rand.eot_samples == 20 and rand.config()["eot_samples"] == 20
    assert isinstance(rand.components()[1], APGDDLR)
    with pytest.raises(ValueError, match="n_target_classes"):
        AutoAttack(n_target_classes=0)


# ----------------------------------------------------------------------------- the ensemble
def test_per_sample_worst_case_and_who_fooled_whom():
    model = ToyNet()
    x, y = toy_batch(8)
    y = y.clone()
    y[0] = (y[0] + 1) % 10  # misclassified before any attack
    eps = 1.5 / 255
    aa = AutoAttack(eps=eps, steps=6, n_target_classes=2, n_queries=30)
    x0, y0 = x.clone(), y.clone()
    res = aa.run(model, x, y, generator=_gen(0))
    assert torch.equal(x, x0) and torch.equal(y, y0) and not res.adv.requires_grad
    assert (res.adv.double() - x.double()).abs().max().item() <= eps
    with torch.no_grad():
        wrong = model(res.adv).argmax(1) != y
    assert torch.equal(res.robust, ~wrong)  # robust exactly where the returned point is classified correctly
    assert res.fooled_by[0] == CLEAN and torch.equal(res.adv[0], x[0])
    for r, by in zip(res.robust.tolist(), res.fooled_by, strict=True):
        assert (by is None) == r and by in (None, CLEAN, "apgd-ce", "apgd-t", "square")
    assert 0 < res.robust.sum() < 7  # the budget fools some rows, not all: the test sees both cases
    # the first stage is APGD-CE on the same rows with the same draws: the ensemble is at least as strong
    alone = APGDCE(eps=eps, steps=6)(model, x, y, generator=_gen(0))
    with torch.no_grad():
        robust_alone = model(alone).argmax(1) == y
    assert not (res.robust & ~robust_alone).any()
    # the plain call returns the same images
    assert torch.equal(aa(model, x, y, generator=_gen(0)), res.adv)
    with pytest.raises(ValueError, match="no targeted variant"):
        aa(model, x, y, target_labels=(y + 1) % 10)


def test_square_catches_what_masked_gradients_hide():
    """Rounding the input zeroes every gradient: APGD cannot move, the score-based Square can."""
    model = Quantised(ToyNet())
    x, _ = toy_batch(8, seed=1)
    with torch.no_grad():
        y = model(x).argmax(1)
    v = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(v), y), [v])
    assert g.abs().max() == 0
    res = AutoAttack(eps=16 / 255, steps=5, n_target_classes=2, n_queries=200).run(
        model, x, y, generator=_gen(0)
    )
    assert res.fooled_by.count("square") >= 2, res.fooled_by


def test_autoattack_rand_uses_eot():
    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = ToyNet()

        def forward(self, v: Tensor) -> Tensor:
            return self.net((v + 0.02 * torch.randn_like(v)).clamp(0, 1))

    model = Noisy()
    x, y = toy_batch(4)
    with pytest.raises(ValueError, match="already an EOT wrapper"):
        AutoAttackRand(steps=2)(EOT(model, n=3), x, y)
    torch.manual_seed(0)
    a = AutoAttackRand(eps=4 / 255, steps=3, eot_samples=2).run(model, x, y, generator=_gen(0))
    torch.manual_seed(0)
    b = AutoAttackRand(eps=4 / 255, steps=3, eot_samples=1).run(EOT(model, n=2), x, y, generator=_gen(0))
    assert torch.equal(a.adv, b.adv) and a.fooled_by == b.fooled_by
    assert l2_norms(a.adv - x).max() > 0


# ----------------------------------------------------------------------------- torchattacks parity
@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    return create_classifier("efficientnet_lite0")


@pytest.fixture(scope="module")
def photos() -> tuple[Tensor, Tensor]:
    """The 20 embedded photos at 96x96 (11 of them classified correctly), to keep the runs short."""
    ds = load_dataset("samples")
    x, y, _ = collate([ds[i] for i in range(len(ds))])
    x = F.interpolate(x, size=(96, 96), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1), y


def _robust(model: nn.Module, adv: Tensor, y: Tensor) -> int:
    with torch.no_grad():
        return int((model(adv).argmax(1) == y).sum().item())


def _ta(module: str):
    """A torchattacks module; skip when torchattacks is not installed (``make install-test`` has it)."""
    return pytest.importorskip(
        f"torchattacks.attacks.{module}", reason="pip install --no-deps torchattacks==3.5.1"
    )


APGD_EPS, APGD_STEPS = 0.1 / 255, 10


@pytest.fixture(scope="module")
def apgd_ce_robust(classifier, photos) -> int:
    """Our APGD-CE (Linf, 10 iterations, 1 restart, rho 0.75) on the photos: robust count."""
    x, y = photos
    a = APGDCE(eps=APGD_EPS, steps=APGD_STEPS, restarts=1, rho=0.75, seed=0)
    return _robust(classifier, a(classifier, x, y), y)


def test_apgd_ce_matches_torchattacks(classifier, photos, apgd_ce_robust):
    """Same settings as torchattacks' APGD (set explicitly): robust accuracy within one image."""
    ta = _ta("apgd")
    x, y = photos
    theirs_attack = ta.APGD(
        classifier, norm="Linf", eps=APGD_EPS, steps=APGD_STEPS, n_restarts=1, seed=0, loss="ce", rho=0.75
    )
    theirs = _robust(classifier, theirs_attack(x, y), y)
    assert 0 < theirs < _robust(classifier, x, y)  # a budget where the outcome is not trivial
    assert abs(apgd_ce_robust - theirs) <= 1, (apgd_ce_robust, theirs)
    assert not classifier.training


def test_apgd_ce_is_at_least_as_strong_as_pgd(classifier, photos, apgd_ce_robust):
    """Same iteration count, same images: APGD-CE leaves no more images robust than PGD."""
    x, y = photos
    pgd = _robust(classifier, PGD(eps=APGD_EPS, steps=APGD_STEPS, seed=0)(classifier, x, y), y)
    assert 0 < pgd < _robust(classifier, x, y)
    assert apgd_ce_robust <= pgd, (apgd_ce_robust, pgd)


def test_apgd_dlr_l2_matches_torchattacks(classifier, photos):
    ta = _ta("apgd")
    x, y = photos
    eps, steps = 0.05, 10
    a = APGDDLR(eps=eps, norm="l2", steps=steps, restarts=1, rho=0.75, seed=0)(classifier, x, y)
    assert l2_norms(a.double() - x.double()).max().item() <= eps * (1 + 1e-6)
    theirs = ta.APGD(classifier, norm="L2", eps=eps, steps=steps, n_restarts=1, seed=0, loss="dlr", rho=0.75)
    ours_r, theirs_r = _robust(classifier, a, y), _robust(classifier, theirs(x, y), y)
    assert 0 < theirs_r < _robust(classifier, x, y)
    assert abs(ours_r - theirs_r) <= 1, (ours_r, theirs_r)


def test_apgd_t_matches_torchattacks(classifier, photos):
    """torchattacks' APGDT runs ``n_classes - 1`` target classes: n_classes=3 gives our 2."""
    ta = _ta("apgdt")
    x, y = photos
    eps, steps = 0.1 / 255, 8
    ours = _robust(
        classifier,
        APGDT(eps=eps, steps=steps, restarts=1, n_target_classes=2, rho=0.75, seed=0)(classifier, x, y),
        y,
    )
    theirs_attack = ta.APGDT(
        classifier, norm="Linf", eps=eps, steps=steps, n_restarts=1, seed=0, rho=0.75, n_classes=3
    )
    theirs = _robust(classifier, theirs_attack(x, y), y)
    assert 0 < theirs < _robust(classifier, x, y)
    assert abs(ours - theirs) <= 1, (ours, theirs)


@pytest.mark.parametrize("norm,eps", [("linf", 4 / 255), ("l2", 1.0)])
def test_square_matches_torchattacks(classifier, photos, norm, eps):
    """Reference p schedule (resc_schedule=False, p_init 0.8), margin loss, same query budget.

    torchattacks (as AutoAttack) draws one window per query for the whole batch, we draw one per
    sample (the paper's algorithm): the searches differ, the robust counts must not.
    """
    ta = _ta("square")
    x, y = photos
    n_queries = 50
    ours_attack = Square(
        eps=eps,
        norm=norm,
        n_queries=n_queries,
        p_init=0.8,
        restarts=1,
        loss="margin",
        rescale_schedule=False,
        seed=0,
    )
    ours = _robust(classifier, ours_attack(classifier, x, y), y)
    theirs_attack = ta.Square(
        classifier,
        norm={"linf": "Linf", "l2": "L2"}[norm],
        eps=eps,
        n_queries=n_queries,
        n_restarts=1,
        p_init=0.8,
        loss="margin",
        resc_schedule=False,
        seed=0,
    )
    theirs = _robust(classifier, theirs_attack(x, y), y)
    assert 0 < theirs < _robust(classifier, x, y)
    assert abs(ours - theirs) <= 1, (ours, theirs)
