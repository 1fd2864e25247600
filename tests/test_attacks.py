"""Tests of srdefense.attacks on the embedded ImageNet classifier (EfficientNet-Lite0) and photos."""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import _eval_helpers
from srdefense.attacks import (
    ATTACKS,
    EOT,
    FGSM,
    IFGSM,
    L2PGD,
    MIFGSM,
    PGD,
    CarliniWagnerL2,
    L2DeepFool,
    LinfDeepFool,
    choose_targets,
    create_attack,
    l2_norms,
    list_attacks,
)
from srdefense.attacks.gradient import kurakin_steps
from srdefense.data import collate, load_dataset
from srdefense.models import create_classifier

NAMES = ["cw", "deepfool", "deepfool-l2", "fgsm", "ifgsm", "mifgsm", "pgd", "pgd-l2"]

# cheap settings per registry name, for the contract tests (defaults are tested elsewhere)
CHEAP: dict[str, dict] = {
    "fgsm": {},
    "ifgsm": {"steps": 2},
    "mifgsm": {"steps": 2},
    "pgd": {"steps": 2},
    "pgd-l2": {"steps": 2, "eps": 0.5},
    "deepfool": {"steps": 3, "candidates": 4},
    "deepfool-l2": {"steps": 3, "candidates": 4},
    "cw": {"binary_search_steps": 1, "steps": 3, "initial_const": 1.0, "abort_early": False},
}
# a bound for the minimal-norm attacks, so the clipping path is checked too
BOUND = {"deepfool": 1 / 255, "deepfool-l2": 0.1, "cw": 0.1}


# ----------------------------------------------------------------------------- helpers
def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(c).argmax(1) for c in x.split(5)])


_one_thread = _eval_helpers._one_thread  # one intra-op thread for this module


@pytest.fixture(scope="module")
def classifier() -> nn.Module:
    return create_classifier("efficientnet_lite0")


@pytest.fixture(scope="module")
def samples() -> tuple[torch.Tensor, torch.Tensor]:
    """The 20 embedded ImageNet photos, resized (shorter side 256) and centre-cropped to 224."""
    ds = load_dataset("samples")
    x, y, _ = collate([ds[i] for i in range(len(ds))])
    return x, y


@pytest.fixture(scope="module")
def correct(classifier, samples) -> tuple[torch.Tensor, torch.Tensor]:
    """The correctly classified samples (18 of 20)."""
    x, y = samples
    ok = _predict(classifier, x) == y
    assert ok.sum() >= 15
    return x[ok], y[ok]


@pytest.fixture(scope="module")
def small(correct) -> tuple[torch.Tensor, torch.Tensor]:
    """Three correctly classified photos at 96x96, for the cheap contract tests."""
    x, y = correct
    xs = F.interpolate(x[:3], size=(96, 96), mode="bilinear", antialias=True, align_corners=False)
    return xs.clamp(0, 1), y[:3]


def _cheap(name: str, **kw) -> object:
    params = {**CHEAP[name], **kw}
    return create_attack(name, **params)


def _assert_bound(adv: torch.Tensor, x: torch.Tensor, attack) -> None:
    assert adv.shape == x.shape and adv.dtype == x.dtype and adv.device == x.device
    assert adv.min() >= 0 and adv.max() <= 1
    if attack.norm == "linf":
        # exact, whether compared in float32 or in float64
        assert (adv - x).abs().max().item() <= attack.eps
        assert (adv.double() - x.double()).abs().max().item() <= attack.eps
    elif attack.norm == "l2":
        assert l2_norms(adv - x).max().item() <= attack.eps * (1 + 1e-6)
        assert l2_norms(adv.double() - x.double()).max().item() <= attack.eps * (1 + 1e-6)
    else:
        assert attack.norm is None and attack.eps is None


# ----------------------------------------------------------------------------- registry
def test_registry_lists_every_attack_and_rejects_unknown_names():
    new = ["apgd-ce", "apgd-dlr", "apgd-t", "autoattack", "autoattack-rand", "square"]
    assert [a.name for a in list_attacks()] == sorted(NAMES + new)
    assert len(ATTACKS) == 14
    known = "known: apgd-ce, apgd-dlr, apgd-t, autoattack, autoattack-rand, cw, deepfool"
    with pytest.raises(KeyError, match=known):
        create_attack("pgd-linf")
    with pytest.raises(TypeError):
        create_attack("fgsm", steps=3)  # FGSM is one full step; no steps parameter


@pytest.mark.parametrize("name", NAMES)
def test_attack_metadata_and_config_are_json(name):
    a = create_attack(name)
    assert a.name == name
    cfg = a.config()
    assert json.loads(json.dumps(cfg)) == cfg and cfg["name"] == name
    assert create_attack(name).config() == cfg
    if name in BOUND:
        assert a.norm is None and a.eps is None
        b = create_attack(name, eps=BOUND[name])
        assert b.norm == b.distance and b.eps == BOUND[name] and b.config() != cfg
    else:
        assert a.norm == ("l2" if name == "pgd-l2" else "linf")
        assert create_attack(name, eps=2 / 255).eps == 2 / 255
    assert a.deterministic == (name not in ("pgd", "pgd-l2"))  # PGD starts at random (Madry)


def test_paper_defaults():
    assert FGSM().eps == 4 / 255
    assert [kurakin_steps(e / 255) for e in (1, 2, 4, 8, 16)] == [1, 2, 5, 10, 20]
    i = IFGSM(eps=4 / 255)
    assert (i.alpha, i.steps) == (1 / 255, 5)
    m = MIFGSM(eps=4 / 255)
    assert (m.momentum, m.steps) == (1.0, 10) and m.alpha == pytest.approx(4 / 255 / 10)
    p = PGD(eps=4 / 255)
    assert p.steps == 10 and p.random_start and p.alpha == pytest.approx(2.5 * 4 / 255 / 10)
    assert L2PGD().eps == 3.0
    d = L2DeepFool()
    assert (d.steps, d.candidates, d.overshoot) == (50, 10, 0.02)
    c = CarliniWagnerL2()
    assert (c.binary_search_steps, c.steps, c.lr, c.initial_const) == (9, 10000, 0.01, 1e-3)
    assert CarliniWagnerL2.fast(steps=7).steps == 7


def test_invalid_arguments_raise(small, classifier):
    x, y = small
    with pytest.raises(ValueError, match="eps"):
        PGD(eps=2.0)
    with pytest.raises(ValueError, match="target"):
        PGD(target="most-likely")
    with pytest.raises(TypeError):
        LinfDeepFool(target="random")  # type: ignore[call-arg]  # DeepFool is untargeted
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FGSM()(classifier, x * 2, y)
    with pytest.raises(ValueError, match="shape"):
        FGSM()(classifier, x, y[:2])
    with pytest.raises(ValueError, match="targeted"):
        L2DeepFool()(classifier, x, y, target_labels=y)
    empty = FGSM()(classifier, x[:0], y[:0])
    assert empty.shape == (0, 3, 96, 96)


# ----------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", NAMES)
def test_norm_bound_is_exact_and_images_stay_in_range(name, classifier, small):
    x, y = small
    attacks = [_cheap(name)]
    if name in BOUND:
        attacks.append(_cheap(name, eps=BOUND[name]))
    for a in attacks:
        adv = a(classifier, x, y, generator=torch.Generator().manual_seed(0))
        _assert_bound(adv, x, a)
        assert not torch.equal(adv, x)


@pytest.mark.parametrize("name", NAMES)
def test_no_side_effects(name, classifier, small):
    """Input untouched, train/eval flag unchanged, no parameter gradients accumulated, and the
    parameters' requires_grad flags restored (off during the call: input gradients only)."""
    x, y = small
    x0, y0 = x.clone(), y.clone()
    a = _cheap(name)
    for training in (False, True):
        model = copy.deepcopy(classifier).train(training)
        params = list(model.parameters())
        params[0].requires_grad_(False)  # a frozen one stays frozen
        seen: list[bool] = []

        def record(m: nn.Module, _: object, seen: list[bool] = seen) -> None:
            seen.extend(p.requires_grad for p in m.parameters())

        hook = model.register_forward_pre_hook(record)
        adv = a(model, x, y, generator=torch.Generator().manual_seed(0))
        hook.remove()
        assert seen and not any(seen)
        assert [p.requires_grad for p in params] == [False] + [True] * (len(params) - 1)
        assert model.training is training
        assert all(m.training is training for m in model.modules())
        assert all(p.grad is None for p in model.parameters())
        assert torch.equal(x, x0) and torch.equal(y, y0)
        assert not adv.requires_grad


def test_parameters_are_restored_when_the_attack_raises(classifier, small):
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = copy.deepcopy(classifier)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("broken model")

    model = Broken()
    with pytest.raises(RuntimeError, match="broken model"):
        PGD(eps=4 / 255, steps=2)(model, *small)
    assert all(p.requires_grad for p in model.parameters())


@pytest.fixture(scope="module")
def classifier64(classifier) -> nn.Module:
    """The classifier in float64, where batched and unbatched kernels agree to ~1e-16."""
    return copy.deepcopy(classifier).double()


@pytest.mark.parametrize("name", NAMES)
def test_row_alone_equals_row_in_batch(name, classifier64, small):
    """Deterministic attacks: every row is attacked independently (per-sample C&W/DeepFool state).

    Checked in float64, where the property is exact up to rounding of 1e-16. In float32 the
    batched and unbatched kernels (which oneDNN chooses per CPU) round differently, and a sign
    step turns a gradient entry that is zero up to rounding into a whole step of ``alpha``, so a
    float32 comparison of the adversarial images tests the CPU, not the code. The float32
    gradients, before the sign step, are compared in
    :func:`test_row_gradient_alone_equals_row_in_batch_float32`.
    """
    x, y = small[0].double(), small[1]
    a = _cheap(name, random_start=False) if name in ("pgd", "pgd-l2") else _cheap(name)
    assert a.deterministic
    batch = a(classifier64, x, y)
    assert batch.dtype == torch.float64
    for i in range(x.shape[0]):
        alone = a(classifier64, x[i : i + 1], y[i : i + 1])
        # a row that depended on another one, or one sign flip, moves a pixel by >= 1e-3
        assert (alone[0] - batch[i]).abs().max().item() <= 1e-12, name


def test_row_gradient_alone_equals_row_in_batch_float32(classifier, small):
    """In float32, per-row loss and gradient (the quantities before any sign step) do not depend
    on the batch, up to float32 rounding of different kernels (relative 1e-6 of the largest entry).
    """
    from srdefense.attacks.base import value_and_grad

    x, y = small

    def fn(m, v):
        z = m(v)
        return F.cross_entropy(z, y_cur, reduction="none"), z

    y_cur = y
    loss_b, logits_b, grad_b = value_and_grad(classifier, x, fn)
    for i in range(x.shape[0]):
        y_cur = y[i : i + 1]
        loss_a, logits_a, grad_a = value_and_grad(classifier, x[i : i + 1], fn)
        scale = grad_b[i].abs().max().item()
        assert scale > 0
        torch.testing.assert_close(loss_a[0], loss_b[i], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(logits_a[0], logits_b[i], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(grad_a[0], grad_b[i], rtol=1e-3, atol=1e-4 * scale)


def test_same_seed_same_result(classifier, small):
    x, y = small
    pgd = PGD(eps=4 / 255, steps=2)
    assert not pgd.deterministic
    a1 = pgd(classifier, x, y, generator=torch.Generator().manual_seed(1))
    a2 = pgd(classifier, x, y, generator=torch.Generator().manual_seed(1))
    a3 = pgd(classifier, x, y, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    seeded = PGD(eps=4 / 255, steps=2, seed=1)
    assert torch.equal(seeded(classifier, x, y), a1)  # the config's seed stands in for the generator
    l2 = L2PGD(eps=0.5, steps=2, seed=3)
    assert torch.equal(l2(classifier, x, y), l2(classifier, x, y))
    # random targets
    t1 = choose_targets(classifier, x, y, "random", torch.Generator().manual_seed(5))
    t2 = choose_targets(classifier, x, y, "random", torch.Generator().manual_seed(5))
    assert torch.equal(t1, t2) and (t1 != y).all()
    fg = FGSM(target="random", seed=5)
    assert not fg.deterministic
    assert torch.equal(fg(classifier, x, y), fg(classifier, x, y))
    assert torch.equal(fg(classifier, x, y), FGSM()(classifier, x, y, target_labels=t1))


def test_eot_wrapper(classifier, small):
    x, y = small
    eot = EOT(classifier, n=2)
    with torch.no_grad():
        torch.testing.assert_close(eot(x), classifier(x), rtol=1e-5, atol=1e-5)
    a = IFGSM(eps=4 / 255, steps=2)
    diff = (a(eot, x, y) - a(classifier, x, y)).abs()
    assert (diff > 1e-5).float().mean().item() < 1e-3
    with pytest.raises(ValueError):
        EOT(classifier, n=0)

    class Noisy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(12, 4)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.lin((v + 0.1 * torch.randn_like(v)).flatten(1))

    torch.manual_seed(0)
    noisy = Noisy()
    v = torch.rand(2, 3, 2, 2)
    # EOT over a randomised model: the loss (not the logits) is averaged over the draws
    from srdefense.attacks.base import value_and_grad

    def fn(m, u):
        z = m(u)
        return F.cross_entropy(z, torch.tensor([0, 1]), reduction="none"), z

    torch.manual_seed(1)
    _, _, g = value_and_grad(EOT(noisy, n=3), v, fn)
    torch.manual_seed(1)
    ref = sum(value_and_grad(noisy, v, fn)[2] for _ in range(3)) / 3
    torch.testing.assert_close(g, ref)


# ----------------------------------------------------------------------------- numbers
def test_pgd10_brings_accuracy_to_at_most_5_percent(classifier, samples):
    x, y = samples
    clean = (_predict(classifier, x) == y).float().mean().item()
    attack = PGD(eps=4 / 255, steps=10, seed=0)
    adv = torch.cat([attack(classifier, xc, yc) for xc, yc in zip(x.split(5), y.split(5), strict=True)])
    _assert_bound(adv, x, attack)
    robust = (_predict(classifier, adv) == y).float().mean().item()
    assert clean >= 0.85
    assert robust <= 0.05, robust


def test_minimal_norm_attacks_succeed_with_less_l2_than_fgsm(classifier, correct):
    x, y = correct[0][:4], correct[1][:4]
    fgsm_l2 = l2_norms(FGSM(eps=4 / 255)(classifier, x, y) - x).mean().item()
    assert fgsm_l2 > 5.0  # ~ 4/255 * sqrt(3 * 224 * 224) = 6.08
    attacks = [
        LinfDeepFool(),
        L2DeepFool(),
        CarliniWagnerL2(binary_search_steps=1, steps=12, lr=0.005, initial_const=1.0, abort_early=False),
    ]
    for a in attacks:
        adv = a(classifier, x, y)
        _assert_bound(adv, x, a)
        success = (_predict(classifier, adv) != y).float().mean().item()
        mean_l2 = l2_norms(adv - x).mean().item()
        assert success >= 0.9, (a.name, success)
        assert mean_l2 < fgsm_l2 / 4, (a.name, mean_l2, fgsm_l2)


def test_targeted_attacks_reach_the_target(classifier, correct):
    x, y = correct[0][5:9], correct[1][5:9]
    gen = torch.Generator().manual_seed(0)
    given = choose_targets(classifier, x, y, "random", gen)
    least = choose_targets(classifier, x, y, "least-likely")
    cases = [
        (PGD(eps=8 / 255, target="random", seed=0), None),
        (MIFGSM(eps=8 / 255, target="least-likely"), None),
        (CarliniWagnerL2(binary_search_steps=1, steps=15, initial_const=10.0, abort_early=False), given),
    ]
    for a, tl in cases:
        if tl is not None:
            targets = tl
        else:  # the draw the attack makes: its config seed, else nothing random
            gen = torch.Generator().manual_seed(a.seed) if a.seed is not None else None
            targets = choose_targets(classifier, x, y, a.target, gen)
        if a.target == "least-likely":
            assert torch.equal(targets, least)
        adv = a(classifier, x, y, target_labels=tl)
        _assert_bound(adv, x, a)
        hit = (_predict(classifier, adv) == targets).float().mean().item()
        assert hit >= 0.75, (a, hit)


# ----------------------------------------------------------------------------- torchattacks parity
def test_matches_torchattacks(classifier, correct):
    """FGSM, PGD (no random start) and MI-FGSM agree with torchattacks 3.5.1 to 1e-5.

    One image per call: torchattacks averages the loss over the batch, we sum it (so that a row
    does not depend on the batch). The 1/N factor changes no sign in exact arithmetic, but in
    float it can flip sign(g + mu * momentum) where that sum is zero up to rounding, and the
    iterates then drift apart (seen for MI-FGSM on 3 images with 2 threads: 1.2 % of entries).
    With N = 1 the arithmetic is identical.
    """
    try:
        from torchattacks.attacks.fgsm import FGSM as TaFGSM
        from torchattacks.attacks.mifgsm import MIFGSM as TaMIFGSM
        from torchattacks.attacks.pgd import PGD as TaPGD
    except ImportError as e:  # pragma: no cover - depends on the test set-up
        pytest.skip(f"torchattacks is not installed (pip install --no-deps torchattacks==3.5.1): {e}")
    x = F.interpolate(correct[0][:3], size=(128, 128), mode="bilinear", antialias=True).clamp(0, 1)
    y = correct[1][:3]
    eps = 4 / 255
    pairs = [
        (FGSM(eps=eps), TaFGSM(classifier, eps=eps)),
        (
            PGD(eps=eps, alpha=1 / 255, steps=5, random_start=False),
            TaPGD(classifier, eps=eps, alpha=1 / 255, steps=5, random_start=False),
        ),
        (
            MIFGSM(eps=eps, alpha=1 / 255, steps=5, momentum=1.0),
            TaMIFGSM(classifier, eps=eps, alpha=1 / 255, steps=5, decay=1.0),
        ),
    ]
    for ours, theirs in pairs:
        for i in range(x.shape[0]):
            a = ours(classifier, x[i : i + 1], y[i : i + 1])
            b = theirs(x[i : i + 1], y[i : i + 1])
            assert (a - b).abs().max().item() < 1e-5, (ours.name, (a - b).abs().max().item())
    assert not classifier.training
