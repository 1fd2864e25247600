"""Contracts of the purifier base classes, composition, registries and weight loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from srdefense._registry import Registry
from srdefense._validation import check_image_batch, check_labels
from srdefense._weights import WeightsError, load_state_dict, sha256_file, verify_sha256
from srdefense.purification import (
    BPDA,
    Compose,
    Defended,
    Identity,
    Lambda,
    NoGradientError,
    ResizeBack,
    create_defense,
)
from srdefense.purification.registry import parse_defense_spec


def _square(x: torch.Tensor) -> torch.Tensor:
    return x * x


def _round(x: torch.Tensor) -> torch.Tensor:
    return torch.round(x * 7) / 7


def test_non_differentiable_stage_raises_in_backward_and_bpda_gives_identity() -> None:
    stage = Lambda(_round, differentiable=False, name="quantise")
    x = torch.rand(2, 3, 5, 4, requires_grad=True)
    y = stage(x)
    assert torch.equal(y, _round(x.detach()))
    with pytest.raises(NoGradientError, match="quantise"):
        y.sum().backward()
    x.grad = None
    out = BPDA(stage)(x)
    assert torch.equal(out, _round(x.detach()))
    w = torch.randn_like(out)
    (out * w).sum().backward()
    assert torch.equal(x.grad, w)  # identity stand-in: gradient passes unchanged


def test_bpda_with_itself_equals_true_gradient() -> None:
    stage = Lambda(_square)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    (g_true,) = torch.autograd.grad((stage(x) * w).sum(), x)
    (g_bpda,) = torch.autograd.grad((BPDA(stage, surrogate=_square)(x) * w).sum(), x)
    torch.testing.assert_close(g_bpda, g_true, rtol=0, atol=0)
    assert torch.allclose(g_true, 2 * x.detach() * w)


def test_bpda_surrogate_shape_mismatch_is_an_error() -> None:
    stage = Lambda(_round, differentiable=False)
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    with pytest.raises(ValueError, match="surrogate output shape"):
        BPDA(stage, surrogate=lambda t: t[..., :2])(x)


def test_compose_derives_flags_and_chains_stages() -> None:
    up = Lambda(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), scale=2)
    rnd = Lambda(_round, differentiable=False)
    c = Compose(rnd, up)
    assert c.scale == 2 and not c.differentiable and not c.randomized
    assert Compose(up, Identity()).differentiable
    x = torch.rand(2, 3, 3, 5)
    torch.testing.assert_close(c(x), up(_round(x)))
    assert c(x).shape == (2, 3, 6, 10)
    with pytest.raises(TypeError, match="stage 0"):
        Compose(nn.Identity())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        Compose()


def test_no_grad_needed_means_no_error_for_non_differentiable_stage() -> None:
    stage = Lambda(_round, differentiable=False)
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    with torch.no_grad():
        assert torch.equal(stage(x), _round(x.detach()))


class _MeanClassifier(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2, 3)), x.amax((1, 2, 3)), x.shape[-1] * torch.ones(len(x))], 1)


def test_defended_resolution_policy() -> None:
    up = Lambda(lambda t: t.repeat_interleave(2, -1).repeat_interleave(2, -2), scale=2)
    clf = _MeanClassifier()
    x = torch.rand(2, 3, 8, 6)
    assert Defended(up, clf)(x)[:, 2].tolist() == [12.0, 12.0]  # the 2x image is classified
    native = Defended(up, clf, resolution="native")(x)
    assert native[:, 2].tolist() == [6.0, 6.0]
    torch.testing.assert_close(native, clf(ResizeBack(2)(up(x))))
    with pytest.raises(ValueError, match="resolution"):
        Defended(up, clf, resolution="4x")  # type: ignore[arg-type]


def test_resize_back_undoes_nearest_upsampling_exactly_on_flat_regions() -> None:
    x = torch.full((1, 3, 4, 4), 0.25)
    up = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
    torch.testing.assert_close(ResizeBack(2)(up), x)


@pytest.mark.parametrize(
    ("bad", "err", "match"),
    [
        ([1, 2], TypeError, "expected a torch.Tensor"),
        (torch.zeros(1, 3, 4, 4, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.zeros(3, 4, 4), ValueError, r"\(N, C, H, W\)"),
        (torch.zeros(1, 1, 4, 4), ValueError, "3 channels"),
    ],
)
def test_bad_image_batches_get_clear_errors(bad: object, err: type, match: str) -> None:
    with pytest.raises(err, match=match):
        check_image_batch(bad, "images")
    with pytest.raises(err, match="images"):
        Identity()(bad)  # type: ignore[arg-type]


def test_check_labels() -> None:
    assert check_labels(torch.tensor([1, 2]), 2).tolist() == [1, 2]
    with pytest.raises(ValueError, match=r"expected shape \(3,\)"):
        check_labels(torch.tensor([1, 2]), 3)
    with pytest.raises(TypeError, match="integer"):
        check_labels(torch.tensor([1.0]), 1)


def test_registry_unknown_name_lists_known_names() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("b", 2)
    reg.add("a", 1)
    assert reg.names() == ["a", "b"] and "a" in reg and len(reg) == 2
    with pytest.raises(KeyError, match="unknown widget 'c'; known: a, b"):
        reg.get("c")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", 3)


def test_defense_spec_parsing() -> None:
    assert parse_defense_spec("wd:sigma=0.02:wavelet=db4:legacy-sigma=false:k=3:x=none:e=4/255") == (
        "wd",
        {"sigma": 0.02, "wavelet": "db4", "legacy_sigma": False, "k": 3, "x": None, "e": 4 / 255},
    )
    with pytest.raises(ValueError, match="expected 'name:key=value'"):
        parse_defense_spec("wd:sigma")
    with pytest.raises(KeyError, match="unknown defense 'nope'; known: .*none"):
        create_defense("nope")
    with pytest.raises(TypeError, match="unknown parameter.*'colour'.*accepted"):
        create_defense("none:colour=red")


def test_sha256_pins_and_safe_loading(tmp_path) -> None:  # type: ignore[no-untyped-def]
    sd = {"w": torch.arange(6.0).reshape(2, 3)}
    path = tmp_path / "model-abcdef12.pt"
    torch.save({"params_ema": sd, "params": {"w": torch.zeros(2, 3)}}, path)
    digest = sha256_file(path)
    verify_sha256(path, digest)
    verify_sha256(path, digest[:8])
    loaded = load_state_dict(path, sha256=digest)
    assert torch.equal(loaded["w"], sd["w"])  # params_ema preferred, as BasicSR does
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        load_state_dict(path, sha256="0" * 64)
    with pytest.raises(WeightsError, match="not found"):
        load_state_dict(tmp_path / "missing.pt")
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "cfg": object.__new__(_MeanClassifier)}, evil)
    with pytest.raises(WeightsError, match="safely"):
        load_state_dict(evil)
    notsd = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], notsd)
    with pytest.raises(WeightsError, match="state dict"):
        load_state_dict(notsd)
