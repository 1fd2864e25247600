"""Tests of the evaluation harness: statistics, metrics, protocol, caching, resume, reports, CLI."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from srdefense.evaluation import (
    ConfigError,
    build_attack_runs,
    build_config,
    evaluate,
    format_eps,
    load_config_file,
    parse_eps,
    parse_eps_list,
    psnr,
    resolve_defense_names,
    ssim,
    wilson_interval,
)
from srdefense.evaluation.checks import check_classifier
from srdefense.evaluation.io import atomic_write_json, read_jsonl
from srdefense.evaluation.results import Results
from srdefense.purification import Identity, Lambda, Purifier

SIZE = 16


# ---------------------------------------------------------------------------- tiny stand-ins
class TinyNet(nn.Module):
    """A small deterministic CNN (4 classes) whose predictions FGSM can flip."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))

    def forward(self, x: Tensor) -> Tensor:
        return 10 * self.fc(torch.tanh(self.conv(x - 0.5)).mean((2, 3)))


class CountingFGSM:
    """FGSM that records every call (the model it saw and the images)."""

    name = "fgsm"
    norm = "linf"
    deterministic = True

    def __init__(self, eps: float) -> None:
        self.eps = eps
        self.calls: list[tuple[nn.Module, Tensor]] = []

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "eps": self.eps}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, generator: Any = None) -> Tensor:
        self.calls.append((model, x.detach().clone()))
        xr = x.detach().clone().requires_grad_(True)
        loss = nn.functional.cross_entropy(model(xr), y)
        (g,) = torch.autograd.grad(loss, xr)
        return (x + self.eps * g.sign()).clamp(0, 1).detach()


class Noise(Purifier):
    """A randomised purifier drawing from its generator (to test seeding and resume)."""

    randomized = True

    def purify(self, x: Tensor) -> Tensor:
        n = torch.randn(x.shape, generator=self.generator, device=x.device)
        return (x + 0.02 * n).clamp(0, 1)


def blur() -> Purifier:
    return Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), name="blur")


def upscale() -> Purifier:
    return Lambda(
        lambda x: nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(
            0, 1
        ),
        scale=2,
        name="up",
    )


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Any:
    # tiny tensors: threads only add overhead (and contention on a shared machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return TinyNet().eval()


@pytest.fixture(scope="module")
def data(model: nn.Module) -> tuple[Tensor, Tensor, list[str]]:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(14, 3, SIZE, SIZE, generator=g)
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[::5] = (labels[::5] + 1) % 4  # some clean errors
    return images, labels, [f"img{i:02d}" for i in range(14)]


def summary_of(path: Path) -> list[dict[str, Any]]:
    return json.loads((path / "results.json").read_text())["summary"]


# ---------------------------------------------------------------------------- statistics, metrics
def test_wilson_interval_hand_computed_reference() -> None:
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4)
    assert hi == pytest.approx(0.9433, abs=1e-4)
    # 1/2: centre (0.5 + 1.9208/2) / 1.9208 ... symmetric around 0.5
    lo, hi = wilson_interval(1, 2)
    assert lo + hi == pytest.approx(1.0)
    assert lo == pytest.approx(0.0945, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def _test_images() -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(3)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 24), torch.linspace(0, 1, 29), indexing="ij")
    smooth = torch.stack([xx, yy, (xx + yy) / 2])
    checker = ((torch.arange(24)[:, None] // 4 + torch.arange(29)[None] // 4) % 2).float().expand(3, -1, -1)
    noise = torch.rand(3, 24, 29, generator=g)
    x = torch.stack([smooth, checker, noise])
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y[1] = nn.functional.avg_pool2d(x[1:2], 3, 1, 1)[0]
    return x, y


def test_ssim_and_psnr_match_skimage() -> None:
    skm = pytest.importorskip("skimage.metrics")
    x, y = _test_images()
    ours_s = ssim(x, y)
    ours_p = psnr(y, x)
    for i in range(x.shape[0]):
        a = x[i].permute(1, 2, 0).double().numpy()
        b = y[i].permute(1, 2, 0).double().numpy()
        ref = skm.structural_similarity(
            a, b, channel_axis=2, data_range=1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert float(ours_s[i]) == pytest.approx(ref, abs=1e-6)
        assert float(ours_p[i]) == pytest.approx(skm.peak_signal_noise_ratio(a, b, data_range=1), abs=1e-6)


def test_ssim_identity_and_small_images() -> None:
    x, _ = _test_images()
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))
    assert torch.isfinite(psnr(x, x)).all()
    with pytest.raises(ValueError, match="11x11"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))


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


# ---------------------------------------------------------------------------- protocol
def test_gray_box_attack_sees_only_the_classifier(model: nn.Module, data: Any) -> None:
    attack = CountingFGSM(8 / 255)
    res = evaluate(model, {"none": Identity(), "up": upscale(), "blur": blur()}, [attack], data, batch_size=5)
    assert len(attack.calls) == 3  # one call per batch, shared by every defense
    for m, x in attack.calls:
        assert m is model
        assert x.shape[-1] == SIZE
    seen = torch.cat([x for _, x in attack.calls])
    assert torch.equal(seen, data[0])  # the clean images, never purified ones
    assert len(res.records) == 14
    r = res.records[0]
    assert set(r.clean) == {"none", "up", "blur"}
    assert set(r.adv["gray-box"]["fgsm@8/255"]) == {"none", "up", "blur"}
    assert r.perturbation["gray-box"]["fgsm@8/255"]["up"].linf <= 8 / 255 + 1e-6
    # the attack works on the undefended classifier, and "none" equals the undefended record
    assert res.accuracy("none", "fgsm", 8 / 255) < res.accuracy("none")
    assert all(
        r.adv["gray-box"]["fgsm@8/255"]["none"] == [r.perturbation["gray-box"]["fgsm@8/255"]["none"].pred]
        for r in res.records
    )


def test_summary_rows_and_worst_case(model: nn.Module, data: Any, tmp_path: Path) -> None:
    res = evaluate(
        model,
        {"none": Identity(), "blur": blur()},
        [CountingFGSM(2 / 255), CountingFGSM(8 / 255)],
        data,
        batch_size=4,
        out=tmp_path,
    )
    summary = summary_of(tmp_path)
    for row in summary:
        assert {"defense", "attack", "eps", "setting", "n", "accuracy", "ci95"} <= set(row)
        assert row["setting"] == {"none": "clean", "robust": "adaptive"}.get(row["attack"], "gray-box")
        assert row["n"] == 14
        lo, hi = row["ci95"]
        assert lo <= row["accuracy"] <= hi
    for d in ("none", "blur"):
        attack_rows = [r for r in summary if r["defense"] == d and r["attack"] == "fgsm"]
        assert len(attack_rows) == 2
        worst = [r for r in summary if r["defense"] == d and r["attack"] == "worst-case"]
        assert {r["key"] for r in worst} == {"worst-case@2/255", "worst-case@8/255", "worst-case"}
        overall = next(r for r in worst if r["eps"] is None)
        assert overall["accuracy"] <= min(r["accuracy"] for r in attack_rows)
        assert overall["accuracy"] <= res.accuracy(d)
        for w in worst:
            assert w["accuracy"] <= res.accuracy(d)
    clean = [r for r in summary if r["attack"] == "none"]
    assert [r["eps"] for r in clean] == [None, None]
    # quality: identity is perfect, blur is not
    q = {r["defense"]: r for r in res.quality}
    assert q["none"]["ssim"] == pytest.approx(1.0)
    assert q["blur"]["ssim"] < 1 and q["blur"]["psnr"] < q["none"]["psnr"]
    # results.json is strict JSON with a config block to rerun
    cfg = json.loads((tmp_path / "results.json").read_text())["config"]
    assert {"versions", "classifier", "defenses", "attacks", "seed", "settings", "run_id"} <= set(cfg)
    assert cfg["versions"]["torch"] == torch.__version__


def test_upscaling_purifier_is_compared_with_upscaled_clean(model: nn.Module, data: Any) -> None:
    res = evaluate(model, {"up": upscale()}, [CountingFGSM(4 / 255)], data, batch_size=7)
    q = res.quality[0]
    assert q["ssim"] == pytest.approx(1.0) and q["psnr"] >= 99
    assert "upscaled bicubic" in q["reference"]


def test_resolution_native_classifies_at_input_size(model: nn.Module, data: Any) -> None:
    seen: list[tuple[int, ...]] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model

        def forward(self, x: Tensor) -> Tensor:
            seen.append(tuple(x.shape[-2:]))
            return self.net(x)

    evaluate(Spy(), {"up": upscale()}, [CountingFGSM(4 / 255)], data, batch_size=14, resolution="native")
    assert set(seen) == {(SIZE, SIZE)}
    seen.clear()
    evaluate(Spy(), {"up": upscale()}, [CountingFGSM(4 / 255)], data, batch_size=14)
    assert (2 * SIZE, 2 * SIZE) in set(seen)


def test_unknown_setting_lists_the_known_ones(model: nn.Module, data: Any) -> None:
    known = r"unknown threat model 'black-box'; known: gray-box, white-box, bpda"
    with pytest.raises(ConfigError, match=known):
        evaluate(model, {"none": Identity()}, [CountingFGSM(4 / 255)], data, setting="black-box")


def test_library_prints_nothing(model: nn.Module, data: Any, tmp_path: Path, capsys: Any) -> None:
    evaluate(model, {"none": Identity()}, [CountingFGSM(4 / 255)], data, batch_size=7, out=tmp_path)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


# ---------------------------------------------------------------------------- caching, resume, seeds
def test_adding_a_defense_does_not_recompute_attacks(model: nn.Module, data: Any, tmp_path: Path) -> None:
    a1 = CountingFGSM(4 / 255)
    r1 = evaluate(model, {"none": Identity()}, [a1], data, batch_size=5, out=tmp_path)
    assert len(a1.calls) == 3 and r1.run["attack_cache_misses"] == 3
    a2 = CountingFGSM(4 / 255)
    r2 = evaluate(model, {"none": Identity(), "blur": blur()}, [a2], data, batch_size=5, out=tmp_path)
    assert len(a2.calls) == 0 and r2.run["attack_cache_hits"] == 3
    assert r2.row("none", "fgsm@4/255") == r1.row("none", "fgsm@4/255")
    # another budget is another cache entry
    a3 = CountingFGSM(2 / 255)
    evaluate(model, {"none": Identity()}, [a3], data, batch_size=5, out=tmp_path)
    assert len(a3.calls) == 3


def test_resume_after_interruption_gives_identical_results(
    model: nn.Module, data: Any, tmp_path: Path
) -> None:
    def defenses() -> dict[str, Purifier]:
        return {"none": Identity(), "noise": Noise(), "blur": blur()}

    full = tmp_path / "full"
    evaluate(model, defenses(), [CountingFGSM(4 / 255)], data, batch_size=4, out=full)

    class Stop(Exception):
        pass

    def stop_after_two(ev: Any) -> None:
        if ev.stage == "batch" and ev.batch == 1:
            raise Stop

    part = tmp_path / "part"
    with pytest.raises(Stop):
        evaluate(
            model, defenses(), [CountingFGSM(4 / 255)], data, batch_size=4, out=part, progress=stop_after_two
        )
    assert not (part / "results.json").exists()
    records, _ = read_jsonl(part / "samples.jsonl")
    assert len(records) == 8  # two batches of 4, flushed as made
    # simulate a crash mid-line: a torn last line is dropped on resume
    with (part / "samples.jsonl").open("a") as f:
        f.write('{"run": "torn')
    attack = CountingFGSM(4 / 255)
    res = evaluate(model, defenses(), [attack], data, batch_size=4, out=part, resume=True)
    assert res.run["resumed_samples"] == 8
    assert len(attack.calls) == 2  # only the two unfinished batches are attacked (the others: cache)
    assert summary_of(part) == summary_of(full)
    full_records, _ = read_jsonl(full / "samples.jsonl")
    part_records, _ = read_jsonl(part / "samples.jsonl")
    assert sorted(part_records, key=lambda r: r["index"]) == full_records
    assert Results.load(part).summary == summary_of(full)


def test_resume_rejects_a_different_run(model: nn.Module, data: Any, tmp_path: Path) -> None:
    evaluate(model, {"none": Identity()}, [CountingFGSM(4 / 255)], data, batch_size=7, out=tmp_path)
    with pytest.raises(ConfigError, match="different run"):
        evaluate(
            model,
            {"none": Identity()},
            [CountingFGSM(4 / 255)],
            data,
            batch_size=7,
            out=tmp_path,
            seed=1,
            resume=True,
        )


def test_interrupted_defense_then_resume(model: nn.Module, data: Any, tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky(x: Tensor) -> Tensor:
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("defense crashed")
        return x.flip(-1)

    with pytest.raises(RuntimeError, match="crashed"):
        evaluate(
            model,
            {"flip": Lambda(flaky, name="flip")},
            [CountingFGSM(4 / 255)],
            data,
            batch_size=4,
            out=tmp_path,
        )
    res = evaluate(
        model,
        {"flip": Lambda(lambda x: x.flip(-1), name="flip")},
        [CountingFGSM(4 / 255)],
        data,
        batch_size=4,
        out=tmp_path,
        resume=True,
    )
    ref = evaluate(
        model,
        {"flip": Lambda(lambda x: x.flip(-1), name="flip")},
        [CountingFGSM(4 / 255)],
        data,
        batch_size=4,
    )
    assert res.summary == ref.summary


def test_same_seed_same_numbers(model: nn.Module, data: Any) -> None:
    def run(seed: int) -> Results:
        return evaluate(model, {"noise": Noise()}, [CountingFGSM(4 / 255)], data, batch_size=5, seed=seed)

    a, b, c = run(0), run(0), run(1)
    assert a.summary == b.summary and a.records == b.records
    assert a.quality == b.quality
    assert c.quality != a.quality  # another seed draws other noise


def test_atomic_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, {"summary": [1]})

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)  # crash after part of the data is written
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(path, {"summary": [2] * 10000})
    monkeypatch.undo()
    monkeypatch.setattr(os, "replace", boom)  # crash at the rename
    with pytest.raises(OSError):
        atomic_write_json(path, {"summary": [3]})
    monkeypatch.undo()
    with pytest.raises(ValueError):  # not serialisable: the file is never touched
        atomic_write_json(path, {"summary": [math.nan]})
    assert json.loads(path.read_text()) == {"summary": [1]}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary files left


# ---------------------------------------------------------------------------- sanity checks
def test_sanity_checks_flag_softmax_randomness_and_zero_gradients(model: nn.Module, data: Any) -> None:
    x, y = data[0][:4], data[1][:4]
    assert check_classifier(model, x, y) == []
    soft = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    assert [w["check"] for w in check_classifier(soft, x, y)] == ["softmax"]

    class Random(nn.Module):
        def forward(self, t: Tensor) -> Tensor:
            return model(t) + torch.randn(t.shape[0], 4)

    assert "randomized" in [w["check"] for w in check_classifier(Random(), x, y)]

    class Flat(nn.Module):
        def forward(self, t: Tensor) -> Tensor:
            return model(t).detach() + 0 * t.mean((1, 2, 3))[:, None]

    assert "zero-gradient" in [w["check"] for w in check_classifier(Flat(), x, y)]
    train = TinyNet().train()
    assert "train-mode" in [w["check"] for w in check_classifier(train, x, y)]
    res = evaluate(soft, {"none": Identity()}, [CountingFGSM(4 / 255)], data, batch_size=7)
    assert "softmax" in [w["check"] for w in res.warnings]


def test_budget_violation_is_reported(model: nn.Module, data: Any) -> None:
    class Cheat(CountingFGSM):
        def __call__(self, model: nn.Module, x: Tensor, y: Tensor, *, generator: Any = None) -> Tensor:
            return (x + 3 * self.eps).clamp(0, 1)

    res = evaluate(model, {"none": Identity()}, [Cheat(2 / 255)], data, batch_size=7)
    assert "budget" in [w["check"] for w in res.warnings]


def test_unreadable_items_are_skipped_with_a_warning(model: nn.Module, data: Any) -> None:
    class DS:
        ids = [f"s{i}" for i in range(6)]

        def __len__(self) -> int:
            return 6

        def __getitem__(self, i: int) -> Any:
            if i == 2:
                raise OSError("broken file")
            from types import SimpleNamespace

            return SimpleNamespace(id=self.ids[i], image=data[0][i], label=int(data[1][i]))

    res = evaluate(model, {"none": Identity()}, [CountingFGSM(4 / 255)], DS(), batch_size=4)
    assert [r.id for r in res.records] == ["s0", "s1", "s3", "s4", "s5"]
    assert any(w["check"] == "data" and "broken file" in w["message"] for w in res.warnings)


# ---------------------------------------------------------------------------- configuration, reports
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


def test_markdown_and_html_reports(model: nn.Module, data: Any, tmp_path: Path) -> None:
    evaluate(
        model,
        {"none": Identity(), "up": upscale()},
        [CountingFGSM(2 / 255), CountingFGSM(4 / 255)],
        data,
        batch_size=7,
        out=tmp_path,
        n_examples=2,
        report=True,
    )
    md = (tmp_path / "report.md").read_text()
    for heading in ("Accuracy per defense and attack", "Clean accuracy", "Worst case", "PSNR"):
        assert heading in md
    assert "| none |" in md and "figures/heatmap.png" in md
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # heatmap, accuracy vs eps, examples
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert (tmp_path / "examples" / "examples.json").exists()
    loaded = Results.load(tmp_path)
    assert len(loaded.examples) == 2 and loaded.examples[0]["clean"].shape == (SIZE, SIZE, 3)
    assert loaded.examples[0]["purified"]["up"].dtype == np.uint8

    from srdefense.evaluation.report import Section, accuracy_table, write_report

    def paper_layout(results: Results) -> Section:
        return Section("Comparison in the layout of the paper", tables=[accuracy_table(results, ci=False)])

    write_report(loaded, tmp_path, extra_sections=[paper_layout])
    assert "Comparison in the layout of the paper" in (tmp_path / "report.md").read_text()


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
