"""``precision`` / ``attack_precision`` of an evaluation: config, CLI, run id, attack gradients, fidelity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from _eval_helpers import TinyNet  # the evaluation tests' stand-in classifier
from srdefense.cli.main import _load_commands, app
from srdefense.evaluation import ConfigError, build_config, evaluate, load_config_file
from srdefense.evaluation.plan import build_plan
from srdefense.purification import Identity
from srdefense.purification.precision import stage_precision
from srdefense.purification.superres import SuperResolve

SIZE = 12
_load_commands()


class SpyFGSM:
    """FGSM that records the precision of every super-resolution stage it attacks through."""

    name = "fgsm"
    norm = "linf"
    deterministic = True

    def __init__(self, eps: float = 4 / 255) -> None:
        self.eps = eps
        self.seen: list[set[str]] = []

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, generator: Any = None) -> Tensor:
        self.seen.append({m.precision for m in model.modules() if isinstance(m, SuperResolve)})
        xr = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(nn.functional.cross_entropy(model(xr), y), xr)
        return (x + self.eps * g.sign()).clamp(0, 1).detach()


def _data(n: int = 4) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(n, 3, SIZE, SIZE, generator=g), torch.arange(n) % 4


# ---------------------------------------------------------------------------- config, YAML, CLI
def test_config_accepts_each_precision_and_refuses_others(tmp_path: Path) -> None:
    for p in ("fp32", "bf16", "fp16", "auto"):
        cfg = build_config({"precision": p, "attack-precision": p})
        assert (cfg.precision, cfg.attack_precision) == (p, p)
    assert build_config({}).precision == "fp32" and build_config({}).attack_precision == "fp32"
    with pytest.raises(ConfigError, match=r"precision: expected one of fp32, bf16, fp16, auto, got 'bf17'"):
        build_config({"precision": "bf17"})
    with pytest.raises(
        ConfigError, match=r"attack_precision: expected one of fp32, bf16, fp16, auto, got 'h'"
    ):
        build_config({"attack_precision": "h"})
    with pytest.raises(ConfigError, match=r"precision: expected a string"):
        build_config({"precision": 16})
    f = tmp_path / "exp.yaml"
    f.write_text("precision: bf16\nattack-precision: auto\n")
    cfg = build_config(load_config_file(f))
    assert (cfg.precision, cfg.attack_precision) == ("bf16", "auto")


def test_cli_evaluate_refuses_a_bad_precision(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["evaluate", "--precision", "bf8", "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2
    assert "precision: expected one of fp32, bf16, fp16, auto, got 'bf8'" in res.output
    res = CliRunner().invoke(app, ["evaluate", "--attack-precision", "x", "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 2
    assert "attack_precision: expected one of fp32, bf16, fp16, auto, got 'x'" in res.output
    assert not (tmp_path / "o").exists()


def test_run_id_and_defense_fingerprint_change_with_precision() -> None:
    ids = [f"s{i}" for i in range(4)]

    def plan(**kw: Any) -> Any:
        return build_plan(TinyNet(), {"sr": SuperResolve("upconv7")}, ["fgsm"], data_ids=ids, data_n=4, **kw)

    fp32, bf16, grad = plan(), plan(precision="bf16"), plan(attack_precision="bf16")
    assert len({fp32.run_id, bf16.run_id, grad.run_id}) == 3
    assert bf16.config["precision"] == "bf16" and fp32.config["precision"] == "fp32"
    assert fp32.config["defenses"][0]["repr"] != bf16.config["defenses"][0]["repr"]
    assert {m.precision for m in bf16.defenses["sr"].modules() if isinstance(m, SuperResolve)} == {"bf16"}
    with pytest.raises(ConfigError, match="precision: expected one of"):
        plan(precision="int8")


# ---------------------------------------------------------------------------- gradients and fidelity
@pytest.mark.parametrize("attack_precision", ["fp32", "bf16", "auto"])
def test_white_box_gradients_use_attack_precision_and_scoring_keeps_precision(
    attack_precision: str,
) -> None:
    torch.manual_seed(0)
    x, y = _data(2)
    spy = SpyFGSM()
    sr = SuperResolve("upconv7")
    res = evaluate(
        TinyNet(),
        {"sr": sr},
        [spy],
        (x, y),
        setting="white-box",
        card=False,
        n_examples=0,
        precision="bf16",
        attack_precision=attack_precision,
    )
    assert spy.seen == [{attack_precision}]  # the attack saw its own precision ("auto": fp32 for gradients)
    assert sr.precision == "bf16"  # and the defense scores in bf16 again afterwards
    assert res.config["attack_precision"] == attack_precision


def test_fidelity_block_on_a_tiny_bf16_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    x, y = _data(4)
    clf = TinyNet()
    res = evaluate(
        clf,
        {"none": Identity(), "sr": SuperResolve("upconv7")},
        ["fgsm"],
        (x, y),
        card=False,
        n_examples=0,
        precision="bf16",
        out=tmp_path / "run",
        report=True,
    )
    block = res.config["precision_fidelity"]
    assert (block["precision"], block["dtype"], block["n"]) == ("bf16", "bfloat16", 4)
    assert block["attack"].startswith("gray-box/fgsm")
    assert set(block["defenses"]) == {"sr"}  # a defense without super-resolution is not compared
    r = block["defenses"]["sr"]
    for k in ("psnr_db", "psnr_adv_db"):
        assert r[k] is not None and 30 < r[k] < 100, r
    assert r["psnr_min_db"] <= r["psnr_db"] and r["psnr_adv_min_db"] <= r["psnr_adv_db"]
    assert 0 < r["max_abs_diff"] < 0.1
    # the agreement is that of the defended classifier between the two precisions, on these images
    sr = SuperResolve("upconv7")
    with torch.no_grad(), stage_precision(sr, "fp32"):
        ref = clf(sr(x)).argmax(1)
    with torch.no_grad(), stage_precision(sr, "bf16"):
        low = clf(sr(x)).argmax(1)
    assert r["top1_agreement_clean"] == pytest.approx(float((ref == low).float().mean()))
    assert 0 <= r["top1_agreement_adv"] <= 1
    # recorded in results.json and shown in report.md
    saved = (tmp_path / "run" / "results.json").read_text()
    assert '"precision_fidelity"' in saved and '"top1_agreement_adv"' in saved
    md = (tmp_path / "run" / "report.md").read_text()
    assert "Precision: bf16 against fp32" in md
    assert f"| sr | {r['psnr_db']:.1f} / {r['psnr_min_db']:.1f} |" in md


def test_fp32_run_records_no_fidelity() -> None:
    x, y = _data(2)
    res = evaluate(TinyNet(), {"sr": SuperResolve("upconv7")}, ["fgsm"], (x, y), card=False, n_examples=0)
    assert "precision_fidelity" not in res.config
    assert res.config["precision"] == "fp32"
