"""Threat models, randomised scoring, robust accuracy and the report card, on tiny stand-ins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import _eval_helpers
from _eval_helpers import labelled_images  # the evaluation tests' stand-ins
from srdefense.attacks import create_attack
from srdefense.evaluation import ConfigError, evaluate
from srdefense.evaluation.threats import create_threat_model, list_threat_models, with_stand_ins
from srdefense.purification import BPDA, Compose, Identity, Lambda, Purifier
from srdefense.purification.compose import Defended

SIZE = 16


class Noise(Purifier):
    """Randomised and differentiable: adds noise drawn from its generator."""

    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        n = torch.randn(x.shape, generator=self.generator, device=x.device)
        return (x + 0.3 * n).clamp(0, 1)


class SecretNoise(Purifier):
    """Randomised, but declared deterministic (the card must notice)."""

    randomized = False

    def purify(self, x: Tensor) -> Tensor:
        return (x + 0.05 * torch.randn(x.shape)).clamp(0, 1)


def zero_grad_quantizer() -> Purifier:
    """A 'differentiable' defense whose gradient is zero almost everywhere (gradient masking)."""
    return Lambda(lambda x: torch.round(x * 4) / 4, name="round4")


class NoGrad(Purifier):
    """Declares no gradient (raises in backward unless a stand-in is used)."""

    differentiable = False

    def purify(self, x: Tensor) -> Tensor:
        return torch.round(x * 16) / 16


_one_thread = _eval_helpers._one_thread
model = _eval_helpers.model


@pytest.fixture(scope="module")
def data(model: nn.Module) -> tuple[Tensor, Tensor, list[str]]:
    images, labels = labelled_images(model, 12, SIZE, seed=3)
    return images, labels, [f"img{i:02d}" for i in range(12)]


def pgd(eps: float = 8 / 255, steps: int = 10) -> Any:
    return create_attack("pgd", eps=eps, steps=steps)


# ---------------------------------------------------------------------------- threat models
def test_registry_lists_every_setting_with_a_description() -> None:
    infos = list_threat_models()
    assert [i.name for i in infos][:3] == ["gray-box", "white-box", "bpda"]
    assert all(i.description for i in infos)
    with pytest.raises(KeyError, match="known: bpda, gray-box, white-box"):
        create_threat_model("black-box")


def test_white_box_wraps_only_the_stage_without_a_gradient(model: nn.Module) -> None:
    smooth = Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1), name="blur")
    hard = NoGrad()
    pipe = Compose(smooth, hard)
    attacked = with_stand_ins(pipe)
    assert isinstance(attacked, Compose)
    assert attacked[0] is smooth and isinstance(attacked[1], BPDA) and attacked[1].purifier is hard
    target = create_threat_model("white-box").target(pipe, model)
    x = torch.rand(2, 3, SIZE, SIZE, requires_grad=True)
    target.module(x).sum().backward()  # no NoGradientError: the stand-in is used
    assert x.grad is not None and x.grad.abs().sum() > 0
    # the blur stage keeps its true gradient: the gradient equals that of blur then identity
    x2 = x.detach().clone().requires_grad_(True)
    y = smooth(x2)
    model(y + (hard(y.detach()) - y.detach())).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-7)


def test_gray_box_attacks_the_classifier_and_white_box_the_defense(model: nn.Module, data: Any) -> None:
    seen: list[nn.Module] = []

    class Spy:
        name = "spy"
        norm = "linf"
        eps = 4 / 255
        deterministic = True

        def config(self) -> dict[str, Any]:
            return {"name": "spy", "eps": self.eps}

        def __call__(self, m: nn.Module, x: Tensor, y: Tensor, *, generator: Any = None) -> Tensor:
            seen.append(m)
            return x

    blur = Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1), name="blur")
    evaluate(
        model,
        {"none": Identity(), "blur": blur},
        [Spy()],
        data,
        setting=["gray-box", "white-box"],
        batch_size=12,
        card=False,
        n_examples=0,
    )
    # gray-box: the classifier, once for both defenses; white-box: none -> the classifier again
    # (same module, same cache key), blur -> the defended model
    assert seen[0] is model
    assert len(seen) == 2
    assert isinstance(seen[1], Defended) and seen[1].purifier is blur


def test_white_box_breaks_a_smooth_defense_that_gray_box_does_not(model: nn.Module, data: Any) -> None:
    flip = Lambda(lambda x: x.flip(-1), name="flip")  # a different image for the classifier
    res = evaluate(
        model,
        {"flip": flip},
        [pgd(16 / 255, 10)],
        data,
        setting=["gray-box", "white-box"],
        batch_size=12,
        n_examples=0,
        card=False,
    )
    assert res.accuracy("flip", "pgd", 16 / 255, setting="white-box") == 0.0
    assert res.accuracy("flip", "pgd", 16 / 255, setting="gray-box") > 0.3
    robust = res.row("flip", "robust@16/255")
    assert robust["setting"] == "adaptive" and robust["accuracy"] == 0.0


def test_bpda_breaks_zero_gradient_masking(model: nn.Module, data: Any) -> None:
    res = evaluate(
        model,
        {"round": zero_grad_quantizer()},
        [pgd(16 / 255, 10)],
        data,
        setting=["white-box", "bpda"],
        batch_size=12,
        n_examples=0,
        card=False,
    )
    white = res.accuracy("round", "pgd", 16 / 255, setting="white-box")
    bpda = res.accuracy("round", "pgd", 16 / 255, setting="bpda")
    assert bpda <= 0.1 < white  # masked gradients stop white-box PGD; BPDA goes around them


def test_unknown_and_bad_values_are_refused(model: nn.Module, data: Any) -> None:
    with pytest.raises(ConfigError, match="eval_draws: expected an integer >= 1"):
        evaluate(model, {"n": Noise()}, [pgd()], data, eval_draws=0)
    with pytest.raises(ConfigError, match="unknown threat model 'eot'"):
        evaluate(model, {"none": Identity()}, [pgd()], data, setting=["gray-box", "eot"])


# ---------------------------------------------------------------------------- randomised defenses
def test_randomised_defense_uses_eot_and_worst_of_k_draws(model: nn.Module, data: Any) -> None:
    res = evaluate(
        model,
        {"noise": Noise()},
        [pgd(4 / 255, 3)],
        data,
        setting=["white-box"],
        eot_samples=3,
        eval_draws=5,
        batch_size=6,
        n_examples=0,
        card=False,
    )
    cfg = next(d for d in res.config["defenses"] if d["name"] == "noise")
    assert cfg["eot_samples"] == 3 and cfg["eval_draws"] == 5
    assert all(len(r.clean["noise"]) == 5 for r in res.records)
    row = res.row("noise", "clean")
    assert row["draws"] == 5
    strict = sum(all(p == r.label for p in r.clean["noise"]) for r in res.records) / len(res.records)
    mean = sum(sum(p == r.label for p in r.clean["noise"]) / 5 for r in res.records) / len(res.records)
    assert row["accuracy"] == pytest.approx(strict) and row["accuracy_mean"] == pytest.approx(mean)
    assert row["accuracy"] <= row["accuracy_mean"]
    target = create_threat_model("white-box").target(Noise(), model, eot_samples=3)
    assert type(target.module).__name__ == "EOT" and target.eot_samples == 3


def test_draws_do_not_depend_on_batches_or_other_defenses(model: nn.Module, data: Any) -> None:
    kw: dict[str, Any] = {"eval_draws": 3, "n_examples": 0, "card": False}
    a = evaluate(model, {"noise": Noise()}, [pgd(4 / 255, 2)], data, batch_size=12, **kw)
    b = evaluate(
        model,
        {"blur": Lambda(lambda x: x, name="id2"), "noise": Noise()},
        [pgd(4 / 255, 2)],
        data,
        batch_size=12,
        **kw,
    )
    c = evaluate(model, {"noise": Noise()}, [pgd(4 / 255, 2)], data, batch_size=12, seed=1, **kw)
    assert [r.clean["noise"] for r in a.records] == [r.clean["noise"] for r in b.records]
    assert [r.quality["noise"] for r in a.records] == [r.quality["noise"] for r in b.records]
    assert [r.quality["noise"] for r in a.records] != [r.quality["noise"] for r in c.records]
    # a different batch composition: the clean draws are per sample, so they do not change
    d = evaluate(model, {"noise": Noise()}, [pgd(4 / 255, 2)], data, batch_size=5, **kw)
    assert [r.clean["noise"] for r in a.records] == [r.clean["noise"] for r in d.records]


# ---------------------------------------------------------------------------- report card
def _card(res: Any, defense: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for c in res.checks:
        if c["defense"] == defense:
            out.setdefault(c["check"], c)
            if c["flag"]:
                out[c["check"]] = c
    return out


def test_card_flags_masked_toys_and_not_the_undefended_classifier(
    model: nn.Module, data: Any, tmp_path: Path
) -> None:
    defenses = {"none": Identity(), "round": zero_grad_quantizer(), "secret": SecretNoise()}
    res = evaluate(
        model,
        defenses,
        [pgd(8 / 255, 10), create_attack("square", eps=8 / 255, n_queries=200)]
        if _has_square()
        else [pgd(8 / 255, 10)],
        data,
        setting=["gray-box", "white-box", "bpda"],
        batch_size=12,
        n_examples=0,
        out=tmp_path,
    )
    none, rnd, sec = _card(res, "none"), _card(res, "round"), _card(res, "secret")
    assert not any(c["flag"] for c in none.values()), [c for c in none.values() if c["flag"]]
    assert rnd["gradients"]["flag"] and "zero" in rnd["gradients"]["message"]
    assert rnd["eps-sweep"]["flag"]  # white-box PGD cannot win at 64/255 through zero gradients
    assert sec["randomness"]["flag"] and "declared deterministic" in sec["randomness"]["message"]
    assert not rnd["randomness"]["flag"]
    # BPDA breaks the toy that masked white-box PGD
    assert res.accuracy("round", "pgd", 8 / 255, setting="bpda") <= 0.1
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["checks"] == res.checks
    assert any(c["check"] == "gradients" and c["flag"] for c in saved["checks"])


def _has_square() -> bool:
    from srdefense.attacks import list_attacks

    return "square" in [a.name for a in list_attacks()]


def test_card_gray_vs_white_flags_an_adaptive_attack_weaker_than_a_blind_one(
    model: nn.Module, data: Any
) -> None:
    # white-box through a stage that multiplies the gradient by zero (but not the forward pass)
    class Masked(Purifier):
        def purify(self, x: Tensor) -> Tensor:
            return x.detach() + 0 * x

    res = evaluate(
        model,
        {"masked": Masked()},
        [pgd(16 / 255, 10)],
        data,
        setting=["gray-box", "white-box"],
        batch_size=12,
        n_examples=0,
    )
    card = _card(res, "masked")
    assert card["gray-vs-white"]["flag"] and card["gray-vs-white"]["samples"] > 0
