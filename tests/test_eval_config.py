"""Tests of the evaluation's configuration (`evaluation/config.py`): eps, attack runs, files, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from srdefense.evaluation import (
    ConfigError,
    build_attack_runs,
    build_config,
    format_eps,
    load_config_file,
    parse_eps,
    parse_eps_list,
    resolve_defense_names,
)


def test_parse_eps() -> None:
    assert parse_eps("4/255") == pytest.approx(4 / 255)
    assert parse_eps("0.01") == 0.01
    assert parse_eps(0.02) == 0.02
    assert parse_eps_list("2/255, 4/255,8/255") == pytest.approx([2 / 255, 4 / 255, 8 / 255])
    assert parse_eps_list(["4/255", 0.5]) == pytest.approx([4 / 255, 0.5])
    assert format_eps(4 / 255) == "4/255"
    assert format_eps(0.01) == "0.01"
    for bad in ("abc", "1/0", "-0.1", "nan"):
        with pytest.raises(ConfigError):
            parse_eps(bad)


def test_attack_runs_one_config_per_eps_and_minimal_norm_once() -> None:
    runs = build_attack_runs(["fgsm", "deepfool", "pgd:steps=2"], eps=[2 / 255, 4 / 255])
    keys = [r.key for r in runs]
    assert keys == ["fgsm@2/255", "fgsm@4/255", "deepfool", "pgd@2/255", "pgd@4/255"]
    assert [r.eps for r in runs][:2] == pytest.approx([2 / 255, 4 / 255])
    assert runs[2].eps is None
    assert runs[-1].describe()["config"]["steps"] == 2
    with pytest.raises(ConfigError, match="known"):
        build_attack_runs(["nosuchattack"], eps=[4 / 255])
    two = build_attack_runs(["pgd", "pgd:steps=3"], eps=[4 / 255])
    assert [r.key for r in two] == ["pgd@4/255", "pgd:steps=3@4/255"]


def test_demo_config() -> None:
    from srdefense.evaluation import DEMO_ATTACKS, demo_config
    from srdefense.purification import list_defenses

    cfg = demo_config(out="runs/demo")
    assert cfg.data == "samples" and cfg.eps == pytest.approx([4 / 255]) and cfg.setting == "gray-box"
    assert cfg.attacks == list(DEMO_ATTACKS)
    fast = {d.name for d in list_defenses() if d.fast}
    assert "none" in cfg.defenses and "paper" in cfg.defenses and set(cfg.defenses) <= fast
    # one SR network defense; the ones that cost minutes each on a CPU are left to evaluate
    assert not {"sr", "paper-faithful", "tvm"} & set(cfg.defenses)
    assert cfg.adaptive_attacks == ["pgd:steps=5:early_stop=true"]
    # batches of 5: half the fresh memory of 10 (see DEMO_BATCH_SIZE), and at most the examples
    assert cfg.batch_size == 5 and cfg.n_examples <= cfg.batch_size


def test_yaml_config_and_precedence(tmp_path: Path) -> None:
    f = tmp_path / "exp.yaml"
    f.write_text(
        "defense: [none, wd]\nattack: fgsm,pgd\neps: ['2/255', 0.01]\nbatch-size: 3\nseed: 5\nout: runs/x\n"
    )
    values = load_config_file(f)
    cfg = build_config(values, {"seed": 7, "attacks": None})
    assert cfg.defenses == ["none", "wd"] and cfg.attacks == ["fgsm", "pgd"]
    assert cfg.eps == pytest.approx([2 / 255, 0.01])
    assert cfg.batch_size == 3 and cfg.seed == 7 and cfg.out == "runs/x"
    bad = tmp_path / "bad.yaml"
    bad.write_text("defenses: none\nbogus: 1\n")
    with pytest.raises(ConfigError, match="bogus.*known"):
        load_config_file(bad)


def test_defense_all_and_unknown_names() -> None:
    names = resolve_defense_names(["all"])
    assert "none" in names and "paper" in names
    assert resolve_defense_names(["none", "wd:sigma=0.02"]) == ["none", "wd:sigma=0.02"]
    with pytest.raises(ConfigError, match=r"unknown defense 'nope'; known: .*none"):
        resolve_defense_names(["nope"])
