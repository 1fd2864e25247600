"""The registries behave alike: one info shape, one decorator style, one spec parser."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import srdefense
from srdefense import RegistryInfo, parse_spec
from srdefense.attacks import ATTACKS, FGSM, create_attack, list_attacks, register_attack
from srdefense.cli.main import _load_commands, app
from srdefense.models import create_classifier, list_classifiers, wrap_classifier
from srdefense.models.schemes import SCHEMES, register_scheme
from srdefense.purification import list_defenses, list_sr_models
from srdefense.purification.learned_denoise import list_denoisers
from srdefense.purification.registry import DEFENSES, parse_defense_spec
from srdefense.purification.sr_backends import SR_MODELS

LISTS = {
    "classifiers": list_classifiers,
    "sr": list_sr_models,
    "denoisers": list_denoisers,
    "defenses": list_defenses,
    "attacks": list_attacks,
}


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_every_list_returns_the_same_kind_of_info(kind):
    infos = LISTS[kind]()
    assert infos, kind
    names = [i.name for i in infos]
    assert names == sorted(names) and len(set(names)) == len(names)
    for info in infos:
        assert isinstance(info, RegistryInfo), (kind, type(info).__name__)
        assert not isinstance(info, str)
        assert isinstance(info.name, str) and info.name
        assert isinstance(info.description, str) and info.description, (kind, info.name)
        assert isinstance(info.reference, str)
        caps = info.capabilities
        assert isinstance(caps, dict) and caps
        json.dumps(caps)  # JSON-able, as the listings print it


def test_capabilities_say_what_the_entries_declare():
    defenses = {d.name: d for d in list_defenses()}
    assert defenses["paper"].capabilities["differentiable"] is True
    assert defenses["jpeg"].capabilities["differentiable"] is False
    assert defenses["random-resize-pad"].capabilities["randomized"] is True
    attacks = {a.name: a for a in list_attacks()}
    assert attacks["pgd-l2"].capabilities["norm"] == "l2"
    assert attacks["fgsm"].capabilities["default_eps"] == pytest.approx(4 / 255)
    assert attacks["deepfool"].capabilities["minimal_norm"] is True
    assert attacks["fgsm"].reference == FGSM.reference


def test_attacks_register_with_a_decorator():
    @register_attack
    class Nudge(FGSM):
        """One-line description of a test attack."""

        name = "nudge-test"

    try:
        info = ATTACKS.get("nudge-test")
        assert info.cls is Nudge and info.description == "One-line description of a test attack."
        assert isinstance(create_attack("nudge-test", eps=2 / 255), Nudge)
        assert "nudge-test" in [a.name for a in list_attacks()]
        with pytest.raises(ValueError, match="already registered"):
            register_attack(Nudge)
    finally:
        del ATTACKS._entries["nudge-test"]


def test_classifier_schemes_are_a_registry():
    seen = []

    def loader(name, *, weights=None, weights_sha256=None):
        seen.append((name, weights, weights_sha256))
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 10))
        return wrap_classifier(net, mean=0.0, std=1.0, input_size=(3, 4, 4), num_classes=10)

    register_scheme("toyscheme")(loader)
    try:
        clf = create_classifier("toyscheme:tiny-v2")
        assert seen == [("tiny-v2", None, None)]
        assert clf(torch.rand(2, 3, 4, 4)).shape == (2, 10)
        assert {"timm", "torchvision"} <= set(SCHEMES.names())
    finally:
        del SCHEMES._entries["toyscheme"]
    for bad in ("", "a.b", "x/y", "c:d"):
        with pytest.raises(ValueError, match="prefix"):
            register_scheme(bad)


def test_one_spec_parser_for_defenses_attacks_and_sr_backends():
    assert parse_spec("pgd:steps=20:eps=8/255:rand-init=true", "attack") == (
        "pgd",
        {"steps": 20, "eps": pytest.approx(8 / 255), "rand_init": True},
    )
    assert parse_defense_spec("wd:sigma=none:wavelet=db2") == parse_spec("wd:sigma=none:wavelet=db2")
    with pytest.raises(ValueError, match=r"attack 'pgd:steps': expected 'name:key=value'"):
        parse_spec("pgd:steps", "attack")
    with pytest.raises(ValueError, match=r"defense 'wd:=1'"):
        parse_defense_spec("wd:=1")
    assert srdefense.parse_spec is parse_spec


def test_cli_help_names_every_registered_entry():
    _load_commands()
    res = CliRunner().invoke(app, ["purify", "--help"], env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    text = re.sub(r"\s+", " ", res.output)
    for name in [*DEFENSES.names(), *SR_MODELS.names()]:
        assert re.search(rf"[ ,:]{re.escape(name)}[,. ]", text), name


def test_defense_info_reads_what_the_purifier_declares():
    from srdefense.purification import Compose, Identity, Purifier
    from srdefense.purification.quantize import FeatureSqueezing
    from srdefense.purification.quilting import ImageQuilting
    from srdefense.purification.registry import register_defense
    from srdefense.purification.tvm import TotalVarianceMinimization as TVM

    class Noisy(Purifier):
        differentiable = False
        randomized = True

        def purify(self, x):
            return x

    register_defense("noisy-test", reference="test", description="a test defense")(lambda: Noisy())
    try:
        info = DEFENSES.get("noisy-test")
        assert (info.differentiable, info.randomized) == (False, True)
        assert info.capabilities["differentiable"] is False
    finally:
        del DEFENSES._entries["noisy-test"]
    quilting = DEFENSES.get("quilting")  # its default needs a database: read from its class
    assert (quilting.differentiable, quilting.randomized) == (
        ImageQuilting.differentiable,
        ImageQuilting.randomized,
    )
    # a composite declares as every purifier does, from its stages
    c = Compose(Identity(), TVM(seed=0))
    assert (c.differentiable, c.randomized) == (False, True)
    assert Compose(Identity()).differentiable and not Compose(Identity()).randomized
    assert FeatureSqueezing(bits=None).differentiable and not FeatureSqueezing().differentiable
