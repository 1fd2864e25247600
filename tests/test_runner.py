"""Tests of the evaluation run (`evaluation/runner.py`, plan, scoring): protocol, caching, resume, seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import _eval_helpers
from _eval_helpers import SIZE, CountingFGSM, Noise, blur, summary_of, upscale
from srdefense.evaluation import ConfigError, evaluate
from srdefense.evaluation.io import read_jsonl
from srdefense.evaluation.results import Results
from srdefense.purification import Identity, Lambda, Purifier

# the shared module-scoped fixtures (pytest finds them by name in this module)
_one_thread = _eval_helpers._one_thread
model = _eval_helpers.model
data = _eval_helpers.data


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
