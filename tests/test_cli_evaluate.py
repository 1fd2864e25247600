"""Tests of `srdefense evaluate` on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

# ---------------------------------------------------------------------------- command line
TINY_MODEL = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 1000)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x):
        return 10 * self.fc(torch.tanh(self.conv(x - 0.5)).mean((2, 3)))


def factory():
    return Net()
"""


@pytest.fixture()
def cli_setup(tmp_path: Path) -> dict[str, Path]:
    from PIL import Image

    (tmp_path / "tiny_model.py").write_text(TINY_MODEL)
    g = np.random.default_rng(0)
    rows = []
    for i in range(6):
        p = tmp_path / f"im{i}.png"
        Image.fromarray((g.random((24, 24, 3)) * 255).astype(np.uint8)).save(p)
        rows.append(f"{p},{i % 3}")
    (tmp_path / "data.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return {"root": tmp_path, "model": tmp_path / "tiny_model.py", "csv": tmp_path / "data.csv"}


def _invoke(args: list[str]) -> Any:
    from typer.testing import CliRunner

    from srdefense.cli.main import _load_commands, app

    _load_commands()
    return CliRunner().invoke(app, args)


def test_cli_evaluate_writes_every_file(cli_setup: dict[str, Path]) -> None:
    root = cli_setup["root"]
    cfg = root / "exp.yaml"
    cfg.write_text(f"data: {cli_setup['csv']}\nimage-size: 16\neps: [2/255]\nseed: 3\nbatch_size: 4\n")
    out = root / "run"
    res = _invoke(
        [
            "evaluate",
            "--config",
            str(cfg),
            "--classifier",
            f"{cli_setup['model']}:factory",
            "--defense",
            "none,bit-depth",
            "--attack",
            "fgsm,deepfool",
            "--eps",
            "4/255",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert res.exit_code == 0, res.output
    for name in ("results.json", "samples.jsonl", "report.md", "report.html"):
        assert (out / name).exists(), name
    data = json.loads((out / "results.json").read_text())
    keys = {(r["defense"], r["key"]) for r in data["summary"]}
    assert ("bit-depth", "fgsm@4/255") in keys and ("none", "deepfool") in keys and ("none", "clean") in keys
    for row in data["summary"]:
        assert {"defense", "attack", "eps", "setting", "n", "accuracy", "ci95"} <= set(row)
        assert row["n"] == 6
    exp = data["config"]["experiment"]
    assert exp["seed"] == 3 and exp["batch_size"] == 4  # from the YAML file
    assert exp["eps"] == pytest.approx([4 / 255])  # the command line wins
    assert "accuracy" in res.output and "bit-depth" in res.output


@pytest.mark.parametrize(
    ("flag", "value", "listed"),
    [
        ("--defense", "nope", "paper"),
        ("--attack", "nope", "fgsm"),
        ("--classifier", "nope", "efficientnet_lite0"),
    ],
)
def test_cli_unknown_names_list_the_known_ones(
    cli_setup: dict[str, Path], flag: str, value: str, listed: str
) -> None:
    args = ["evaluate", "--data", str(cli_setup["csv"]), "--out", str(cli_setup["root"] / "o"), flag, value]
    res = _invoke(args)
    assert res.exit_code == 2
    assert "Traceback" not in res.output
    err = res.stderr if hasattr(res, "stderr") else res.output
    assert "known" in err and listed in err
    assert not (cli_setup["root"] / "o" / "results.json").exists()


def test_cli_bad_eps_and_missing_out(cli_setup: dict[str, Path]) -> None:
    res = _invoke(["evaluate", "--data", str(cli_setup["csv"]), "--eps", "four", "--out", "x"])
    assert res.exit_code == 2 and "eps" in (res.stderr if hasattr(res, "stderr") else res.output)
    res = _invoke(["evaluate", "--data", str(cli_setup["csv"])])
    assert res.exit_code == 2 and "--out" in (res.stderr if hasattr(res, "stderr") else res.output)


def test_cli_evaluate_loads_classifier_weights(cli_setup: dict[str, Path]) -> None:
    """--classifier-weights reaches the model: all-zero weights make every logit 0 (class 0)."""
    import importlib.util

    from safetensors.torch import save_file

    spec = importlib.util.spec_from_file_location("tiny_model_w", cli_setup["model"])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    zeros = {k: torch.zeros_like(v) for k, v in mod.factory().state_dict().items()}
    wfile = cli_setup["root"] / "zeros.safetensors"
    save_file(zeros, str(wfile))
    out = cli_setup["root"] / "zw"
    args = ["evaluate", "--data", str(cli_setup["csv"]), "--image-size", "16", "--classifier"]
    args += [f"{cli_setup['model']}:factory", "--classifier-weights", str(wfile), "--defense", "none"]
    args += ["--attack", "fgsm", "--out", str(out), "--quiet"]
    res = _invoke(args)
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["experiment"]["classifier_weights"] == str(wfile)
    clean = next(r for r in data["summary"] if r["defense"] == "none" and r["key"] == "clean")
    assert clean["accuracy"] == pytest.approx(2 / 6)  # labels are i % 3: class 0 for 2 of 6 images
    missing = cli_setup["root"] / "missing.safetensors"
    bad = _invoke([str(missing) if a == str(wfile) else a for a in args])
    assert bad.exit_code == 2 and "missing.safetensors" in bad.output.replace("\n", "")


def test_cli_evaluation_of_nothing_exits_non_zero(cli_setup: dict[str, Path]) -> None:
    root = cli_setup["root"]
    csv = root / "missing.csv"
    csv.write_text(f"path,label\n{root / 'gone1.png'},0\n{root / 'gone2.png'},1\n")
    args = [
        "evaluate",
        "--data",
        str(csv),
        "--classifier",
        f"{cli_setup['model']}:factory",
        "--image-size",
        "16",
    ]
    res = _invoke([*args, "--defense", "none", "--attack", "fgsm", "--out", str(root / "empty"), "--quiet"])
    assert res.exit_code != 0
    assert "no sample could be evaluated" in res.output
    bad = _invoke([*args[:-1], "0", "--defense", "none", "--attack", "fgsm", "--out", str(root / "z")])
    assert bad.exit_code == 2 and "image_size: expected an integer >= 1" in bad.output


def test_cli_adaptive_settings_and_card(cli_setup: dict[str, Path]) -> None:
    out = cli_setup["root"] / "adaptive"
    res = _invoke(
        [
            "evaluate",
            "--data",
            str(cli_setup["csv"]),
            "--classifier",
            f"{cli_setup['model']}:factory",
            "--image-size",
            "16",
            "--defense",
            "none,bit-depth",
            "--attack",
            "fgsm",
            "--adaptive-attack",
            "pgd:steps=3",
            "--setting",
            "gray-box,white-box,bpda",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["config"]["settings"] == ["gray-box", "white-box", "bpda"]
    settings = {(r["setting"], r["attack"]) for r in data["summary"]}
    assert {("gray-box", "fgsm"), ("white-box", "pgd"), ("bpda", "pgd"), ("adaptive", "robust")} <= settings
    assert {c["check"] for c in data["checks"]} >= {"randomness", "gradients", "eps-sweep", "gray-vs-white"}
    md = (out / "report.md").read_text()
    assert "Gray-box against adaptive attacks" in md and "Report card" in md
    bad = _invoke(["evaluate", "--setting", "gray-box,eot", "--out", str(out)])
    assert bad.exit_code == 2 and "known: gray-box, white-box, bpda" in bad.output


def test_cli_evaluate_max_pixels(cli_setup: dict[str, Path]) -> None:
    args = ["evaluate", "--data", str(cli_setup["csv"]), "--classifier", f"{cli_setup['model']}:factory"]
    args += ["--image-size", "16", "--defense", "none", "--attack", "fgsm", "--quiet"]
    small = _invoke([*args, "--max-pixels", "100", "--out", str(cli_setup["root"] / "mp")])
    assert small.exit_code != 0 and "no sample could be evaluated" in small.output
    assert "max_pixels=100" in small.output  # the 24x24 photos are over the limit, and say why
    ok = _invoke([*args, "--max-pixels", "1000", "--out", str(cli_setup["root"] / "mp2")])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("flag", ["--n", "--num-images"])
def test_cli_subset_size_has_a_name_torchrun_passes_through(
    cli_setup: dict[str, Path], flag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import srdefense.cli.evaluate as evaluate_cli

    seen: list[Any] = []
    monkeypatch.setattr(evaluate_cli, "run_and_show", seen.append)
    out = str(cli_setup["root"] / "o")
    res = _invoke(["evaluate", "--data", str(cli_setup["csv"]), "--out", out, flag, "3"])
    assert res.exit_code == 0, res.output
    assert seen[0].n == 3
    # torchrun's own parser rejects --n (an ambiguous abbreviation) but hands --num-images on
    from torch.distributed.run import get_args_parser

    argv = ["--nproc-per-node", "2", "-m", "srdefense", "evaluate", flag, "3"]
    if flag == "--n":
        with pytest.raises(SystemExit):
            get_args_parser().parse_args(argv)
    else:
        assert get_args_parser().parse_args(argv).training_script_args == ["evaluate", flag, "3"]
