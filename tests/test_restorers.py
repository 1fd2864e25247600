"""The restorers group: waifu2x noise levels as SR specs, group expansion, restoration PSNR, report."""

from __future__ import annotations

import html
import re

import pytest
import torch

from srdefense.evaluation import restorers as R
from srdefense.evaluation.config import ConfigError, resolve_defense_names
from srdefense.evaluation.results import Results
from srdefense.purification import create_defense, create_sr_model
from srdefense.purification.superres import UPCONV7_WEIGHTS

DEFAULT_GROUP = [
    "paper",
    "paper:sr_model=upconv7:noise=0",
    "paper:sr_model=upconv7:noise=1",
    "paper:sr_model=upconv7:noise=2",
    "paper:sr_model=upconv7:noise=3",
    "paper:sr_model=bicubic",
    "paper:sr_model=nearest",
]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- upconv7:noise=N


def test_upconv7_noise_spec_selects_the_pinned_weights():
    x = torch.rand(1, 3, 9, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        outs = {
            lvl: create_sr_model("upconv7" if lvl is None else f"upconv7:noise={lvl}")(x)
            for lvl in UPCONV7_WEIGHTS
        }
        alias = create_sr_model("upconv7", noise_level=2)(x)
    assert torch.equal(outs[2], alias)  # same weights, same kernels
    vals = list(outs.values())
    for i in range(len(vals)):
        for j in range(i + 1, len(vals)):
            assert (vals[i] - vals[j]).abs().max() > 1e-3  # five different networks
    with pytest.raises(ValueError, match="disagree"):
        create_sr_model("upconv7:noise=1", noise_level=2)
    with pytest.raises(ValueError, match="noise"):
        create_sr_model("upconv7:noise=4")


def test_defense_spec_passes_sr_options_on():
    d = create_defense("paper:sr_model=upconv7:noise=3:sigma=0.02")
    sr = d.stages[1]
    assert sr.model_name == "upconv7:noise=3"
    ref = create_sr_model("upconv7", noise_level=3)
    for (k, a), (_, b) in zip(sr.net.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert create_defense("sr:noise=1").model_name == "upconv7:noise=1"
    with pytest.raises(TypeError, match="unknown parameter"):
        create_defense("paper:nois=1")


# ----------------------------------------------------------------------------- group expansion


def test_default_group():
    assert R.expand_restorers() == DEFAULT_GROUP
    kinds = {r.defense: r.kind for r in R.restorer_group()}
    assert kinds["paper:sr_model=bicubic"] == kinds["paper:sr_model=nearest"] == "control"
    assert kinds["paper:sr_model=upconv7:noise=2"] == "learned SR"
    assert resolve_defense_names(["none", "restorers", "paper"]) == ["none", *DEFAULT_GROUP]


def test_group_with_user_checkpoints(tmp_path):
    files = {k: tmp_path / f"{k}.pth" for k in ("edsr", "esrgan", "swinir", "dncnn")}
    for f in files.values():
        f.write_bytes(b"x")
    spec = (
        f"restorers:edsr={files['edsr']}:spandrel={files['esrgan']}:spandrel={files['swinir']}"
        f":denoiser={files['dncnn']}"
    )
    got = R.expand_restorers(spec)
    assert got == [
        *DEFAULT_GROUP[:5],
        f"paper:sr_model=edsr:sr_weights={files['edsr']}",
        f"paper:sr_model=spandrel:sr_weights={files['esrgan']}",
        f"paper:sr_model=spandrel:sr_weights={files['swinir']}",
        f"paper:denoiser=spandrel:denoiser_weights={files['dncnn']}",
        *DEFAULT_GROUP[5:],
    ]
    alone = R.expand_restorers(f"restorers:wd=false:spandrel={files['esrgan']}")
    assert alone[0] == "sr" and f"sr:sr_model=spandrel:sr_weights={files['esrgan']}" in alone
    assert "sr:sr_model=bicubic" in alone and not any(s.startswith("paper") for s in alone)


def test_group_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="file not found: .*nope.pth"):
        R.expand_restorers(f"restorers:spandrel={tmp_path / 'nope.pth'}")
    with pytest.raises(ValueError, match="unknown key 'sr'"):
        R.expand_restorers("restorers:sr=x")
    with pytest.raises(ValueError, match="wd expects true or false"):
        R.expand_restorers("restorers:wd=maybe")
    with pytest.raises(ConfigError, match="unknown key 'foo'"):
        resolve_defense_names(["restorers:foo=1"])


def test_every_default_member_builds_and_keeps_the_contract():
    x = torch.rand(2, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    for spec in DEFAULT_GROUP:
        d = create_defense(spec)
        assert d.differentiable and d.scale == 2, spec
        with torch.no_grad():
            y = d(x)
        assert y.shape == (2, 3, 24, 20) and float(y.min()) >= 0 and float(y.max()) <= 1, spec


# ----------------------------------------------------------------------------- restoration PSNR


def test_restoration_psnr_orders_networks_and_controls():
    try:
        hr = R.sample_crops(size=96, n=3)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    assert hr.shape == (3, 3, 96, 96)
    p = {s: R.restoration_psnr(s, hr) for s in ("sr", "bicubic", "nearest", "none")}
    assert p["sr"] > p["bicubic"] > p["nearest"]  # measured on 20 photos: 30.94, 28.55, 26.7 dB
    assert p["none"] == pytest.approx(100.0)  # scale 1, identity: the PSNR ceiling


# ----------------------------------------------------------------------------- report section


def _results(defenses, acc, quality_psnr):
    summary = []
    for d in defenses:
        clean, fgsm, worst = acc[d]
        summary += [
            {"defense": d, "attack": "none", "eps": None, "key": "clean", "accuracy": clean, "ci95": [0, 1]},
            {
                "defense": d,
                "attack": "fgsm",
                "eps": 4 / 255,
                "key": "fgsm@4/255",
                "accuracy": fgsm,
                "ci95": [0, 1],
            },
            {
                "defense": d,
                "attack": "worst-case",
                "eps": None,
                "key": "worst-case",
                "accuracy": worst,
                "ci95": [0, 1],
            },
        ]
    quality = [{"defense": d, "psnr": quality_psnr[d], "ssim": None, "reference": "x"} for d in defenses]
    config = {"defenses": [{"name": d} for d in defenses], "attacks": [], "setting": "gray-box"}
    return Results(config=config, records=[], summary=summary, quality=quality, perturbation=[])


DEFS = ["paper", "paper:sr_model=upconv7:noise=3", "paper:sr_model=bicubic", "paper:sr_model=nearest"]
ACC = {
    DEFS[0]: (0.75, 0.6, 0.5),
    DEFS[1]: (0.7, 0.55, 0.45),
    DEFS[2]: (0.7, 0.4, 0.35),
    DEFS[3]: (0.6, 0.5, 0.5),
}
FID = {DEFS[0]: 33.1, DEFS[1]: 32.0, DEFS[2]: 41.5, DEFS[3]: 30.2}
PSNR = {DEFS[0]: 30.81, DEFS[1]: 28.64, DEFS[2]: 28.48, DEFS[3]: 26.65}


def _md_rows(md: str) -> dict[str, list[str]]:
    rows = {}
    for line in md.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        rows[cells[-1]] = cells
    return rows


def test_report_table_holds_the_input_numbers():
    res = _results(DEFS, ACC, FID)
    rep = R.restorers_report(res.summary, res.quality, DEFS, PSNR)
    assert rep is not None and rep.attacked_key == "worst-case"
    rows = _md_rows(rep.markdown)
    assert set(rows) == set(DEFS)
    for d in DEFS:
        num, net, kind, p, fid, clean, worst, spec = rows[d]
        assert int(num) == DEFS.index(d) + 1  # the plot's point label
        assert spec == d
        assert float(p) == pytest.approx(PSNR[d], abs=0.005)
        assert float(fid) == pytest.approx(FID[d], abs=0.005)
        assert float(clean) == pytest.approx(100 * ACC[d][0], abs=0.05)
        assert float(worst) == pytest.approx(100 * ACC[d][2], abs=0.05)
    assert rows[DEFS[1]][1] == "upconv7 (noise=3)" and rows[DEFS[2]][2] == "control"
    for d in DEFS:
        assert f">{html.escape(d)}</td>" in rep.html
    assert rep.png is not None and rep.png[:8] == b"\x89PNG\r\n\x1a\n"


def test_spearman_matches_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = [PSNR[d] for d in DEFS]
    y = [ACC[d][2] for d in DEFS]  # with a tie (0.5, 0.5)
    assert R.spearman(x, y) == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    rep = R.restorers_report(_results(DEFS, ACC, FID).summary, [], DEFS, PSNR)
    assert rep.spearman == pytest.approx(scipy_stats.spearmanr(x, y).statistic, abs=1e-12)
    assert R.spearman([1, 2], [3, 4]) is None and R.spearman([1, 1, 1], [1, 2, 3]) is None


def test_section_shown_only_with_two_learned_networks(monkeypatch):
    from srdefense.evaluation import report

    calls = []

    def fake_measure(specs, n=None):
        calls.append(list(specs))
        return {s: PSNR.get(s) for s in specs}

    monkeypatch.setattr(R, "measure_restoration_psnr", fake_measure)
    assert report.section_restorers in report.DEFAULT_SECTIONS
    sec = report.section_restorers(_results(DEFS, ACC, FID))
    assert sec is not None and sec.title == "Does a better restoration network defend better?"
    assert calls == [DEFS] and len(sec.figures) == 1
    assert "Spearman" in " ".join(sec.text)
    demo = ["none", "paper", "sr", "bicubic", "nearest"]  # one network, twice: nothing to compare
    acc = {d: (0.5, 0.5, 0.5) for d in demo}
    assert report.section_restorers(_results(demo, acc, dict.fromkeys(demo, 30.0))) is None
    assert calls == [DEFS]  # nothing measured for it


def test_list_shows_sr_models_and_denoisers_with_licence_scale_parameters():
    from typer.testing import CliRunner

    from srdefense.cli.main import _load_commands, app

    _load_commands()
    res = CliRunner().invoke(app, ["list", "sr"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "│ upconv7" in ln)
    assert "x2" in line and "0.55M" in line and "noise=none|0|1|2|3" in line and "MIT" in line
    line = next(ln for ln in res.output.splitlines() if "│ spandrel" in ln)
    assert "from file" in line
    res = CliRunner().invoke(app, ["list", "denoisers"], env={"COLUMNS": "250"})
    assert res.exit_code == 0 and "│ wavelet" in res.output and "│ spandrel" in res.output
