"""Resume and the cache never change the numbers; an evaluation that evaluates nothing is an error;
configuration types are strict; reports escape HTML; result files get the umask's mode."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import _eval_helpers
from _eval_helpers import labelled_images  # the evaluation tests' stand-ins
from srdefense.attacks import create_attack
from srdefense.evaluation import ConfigError, EmptyEvaluationError, build_config, evaluate, load_config_file
from srdefense.evaluation.records import DuplicateSampleError, load_records
from srdefense.evaluation.results import summarize
from srdefense.purification import Identity, Lambda

SIZE = 12


_one_thread = _eval_helpers._one_thread
model = _eval_helpers.model


@pytest.fixture(scope="module")
def data(model: nn.Module) -> tuple[Tensor, Tensor, list[str]]:
    images, labels = labelled_images(model, 8, SIZE, seed=5)
    return images, labels, [f"s{i}" for i in range(8)]


def blur() -> Lambda:
    return Lambda(lambda x: nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False), name="blur")


def run(model: nn.Module, data: Any, out: Path, **kw: Any) -> Any:
    return evaluate(
        model,
        {"none": Identity(), "blur": blur()},
        [create_attack("pgd", eps=8 / 255, steps=3)],
        data,
        setting=["gray-box", "white-box"],
        batch_size=4,
        out=out,
        n_examples=0,
        card=False,
        **kw,
    )


# ---------------------------------------------------------------------------- resume
@pytest.mark.parametrize("cut", [1, 17, 0.5, -2])
def test_resume_drops_a_torn_tail_and_the_rest_of_its_batch(
    model: nn.Module, data: Any, tmp_path: Path, cut: float
) -> None:
    full = run(model, data, tmp_path / "full")
    part = tmp_path / "part"
    run(model, data, part)
    log = part / "samples.jsonl"
    raw = log.read_bytes()
    lines = raw.splitlines(keepends=True)
    assert len(lines) == 8
    # keep the first batch, 2 records of the second, and a torn piece of the third line of it
    kept = b"".join(lines[:6])
    third = lines[6]
    n = int(cut * len(third)) if isinstance(cut, float) else (cut if cut > 0 else len(third) + cut)
    log.write_bytes(kept + third[:n])
    (part / "results.json").unlink()
    res = run(model, data, part, resume=True)
    assert res.run["resumed_samples"] == 4  # only the complete first batch
    assert len(res.records) == 8 and len({r.id for r in res.records}) == 8
    assert res.summary == full.summary
    assert any(w["check"] == "resume" for w in res.warnings)
    again = load_records(log, res.config["run_id"])
    assert len(again.records) == 8 and not again.torn and again.dropped == 0


def test_summary_refuses_duplicate_sample_ids(model: nn.Module, data: Any, tmp_path: Path) -> None:
    res = run(model, data, tmp_path)
    with pytest.raises(DuplicateSampleError, match="duplicate sample"):
        summarize(res.config, res.records + res.records[:1])


def test_resume_of_a_white_box_run_gives_identical_numbers(
    model: nn.Module, data: Any, tmp_path: Path
) -> None:
    full = run(model, data, tmp_path / "full")

    class Stop(Exception):
        pass

    def stop(ev: Any) -> None:
        if ev.stage == "batch" and ev.batch == 0:
            raise Stop

    with pytest.raises(Stop):
        run(model, data, tmp_path / "part", progress=stop)
    res = run(model, data, tmp_path / "part", resume=True)
    assert res.run["resumed_samples"] == 4
    assert res.summary == full.summary
    assert [r.to_json() for r in res.records] == [r.to_json() for r in full.records]


# ---------------------------------------------------------------------------- cache
def test_a_changed_cache_entry_is_rejected_and_recomputed(
    model: nn.Module, data: Any, tmp_path: Path
) -> None:
    first = run(model, data, tmp_path / "a", cache_dir=tmp_path / "cache")
    files = sorted((tmp_path / "cache").rglob("*.pt"))
    assert files
    entry = torch.load(files[0], weights_only=True)
    entry["adv"] = (entry["adv"] + 0.001).clamp(0, 1)  # a subtle change: within budget, same shape
    torch.save(entry, files[0])
    again = run(model, data, tmp_path / "b", cache_dir=tmp_path / "cache")
    msgs = [w["message"] for w in again.warnings if w["check"] == "cache"]
    assert len(msgs) == 1 and "checksum" in msgs[0] and str(files[0]) in msgs[0]
    assert again.run["attack_cache_misses"] == 1
    assert again.summary == first.summary
    # the recomputed entry replaced the bad one: a third run uses the cache throughout
    third = run(model, data, tmp_path / "c", cache_dir=tmp_path / "cache")
    assert third.run["attack_cache_misses"] == 0 and not [w for w in third.warnings if w["check"] == "cache"]


def test_cache_entry_over_budget_is_rejected(model: nn.Module, data: Any, tmp_path: Path) -> None:
    from srdefense.evaluation.cache import AdversarialCache

    cache = AdversarialCache(tmp_path)
    x = torch.rand(2, 3, 4, 4)
    cache.put("ab" * 32, (x + 0.5).clamp(0, 1))
    assert cache.get("ab" * 32, x, 8 / 255, "linf") is None
    assert "budget" in cache.rejected[0][1]
    cache.put("cd" * 32, x)
    assert cache.get("cd" * 32, x.double(), None, None) is not None  # dtype follows the clean batch
    assert cache.get("cd" * 32, x[:1], None, None) is None and "shape" in cache.rejected[-1][1]


def test_white_box_cache_key_follows_the_defense(model: nn.Module, data: Any, tmp_path: Path) -> None:
    kw: dict[str, Any] = {"setting": "white-box", "batch_size": 8, "n_examples": 0, "card": False}
    a = evaluate(
        model, {"b": blur()}, [create_attack("pgd", eps=8 / 255, steps=2)], data, cache_dir=tmp_path, **kw
    )
    assert a.run["attack_cache_misses"] == 1
    b = evaluate(
        model, {"b": blur()}, [create_attack("pgd", eps=8 / 255, steps=2)], data, cache_dir=tmp_path, **kw
    )
    assert b.run["attack_cache_hits"] == 1 and b.run["attack_cache_misses"] == 0
    from srdefense.purification import create_defense

    c = evaluate(
        model,
        {"b": create_defense("median")},
        [create_attack("pgd", eps=8 / 255, steps=2)],
        data,
        cache_dir=tmp_path,
        **kw,
    )
    assert c.run["attack_cache_misses"] == 1  # another defense under the same name: recomputed


# ---------------------------------------------------------------------------- nothing to evaluate
def test_an_evaluation_of_nothing_is_an_error(model: nn.Module) -> None:
    class Broken:
        ids = ["a", "b"]

        def __len__(self) -> int:
            return 2

        def __getitem__(self, i: int) -> Any:
            raise OSError(f"cannot read {self.ids[i]}")

    with pytest.raises(
        EmptyEvaluationError, match=r"no sample could be evaluated \(2 unreadable: .*cannot read a"
    ):
        evaluate(model, {"none": Identity()}, [create_attack("fgsm", eps=4 / 255)], Broken())


@pytest.mark.parametrize(
    ("yaml", "match"),
    [
        ("n: 2.9\n", r"n: expected an integer, got 2\.9"),
        ('resume: "ture"\nout: x\n', r"resume: expected a boolean \(true or false\), got 'ture'"),
        ("data: [a, b]\n", r"data: expected a string, got \['a', 'b'\]"),
        ("image-size: 0\n", r"image_size: expected an integer >= 1, got 0"),
        ("image-size: -3\n", r"image_size: expected an integer >= 1, got -3"),
        ("batch-size: 2.0\n", r"batch_size: expected an integer"),
        ("eps: [true]\n", r"eps"),
        ("setting: white-box,eot\n", r"setting: unknown threat model 'eot'"),
    ],
)
def test_yaml_values_are_checked_strictly(tmp_path: Path, yaml: str, match: str) -> None:
    f = tmp_path / "exp.yaml"
    f.write_text(yaml)
    with pytest.raises(ConfigError, match=match):
        build_config(load_config_file(f))


def test_yaml_takes_the_adaptive_options(tmp_path: Path) -> None:
    f = tmp_path / "exp.yaml"
    f.write_text(
        "setting: [gray-box, white-box, bpda]\neot-samples: 20\neval-draws: 10\nattack: autoattack\n"
    )
    cfg = build_config(load_config_file(f))
    assert (
        cfg.settings == ["gray-box", "white-box", "bpda"] and cfg.eot_samples == 20 and cfg.eval_draws == 10
    )


# ---------------------------------------------------------------------------- reports and files
def test_report_md_escapes_html_and_files_get_the_umask_mode(
    model: nn.Module, data: Any, tmp_path: Path
) -> None:
    images, labels, _ = data
    hostile = ["<script>alert(1)</script>.png"] + [f"s{i}" for i in range(1, 8)]
    old = os.umask(0o022)
    try:
        evaluate(
            model,
            {"none": Identity()},
            [create_attack("fgsm", eps=4 / 255)],
            (images, labels, hostile),
            batch_size=8,
            out=tmp_path,
            n_examples=2,
            report=True,
            card=False,
            experiment={"data": "<img src=x onerror=alert(1)>"},
        )
    finally:
        os.umask(old)
    md = (tmp_path / "report.md").read_text()
    assert "<script>" not in md and "<img" not in md
    for name in ("results.json", "report.md", "report.html", "samples.jsonl"):
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        assert mode == 0o644, (name, oct(mode))
    for p in list((tmp_path / "figures").glob("*.png")) + list((tmp_path / "examples").glob("*")):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert json.loads((tmp_path / "results.json").read_text())["config"]["experiment"]["data"].startswith(
        "<img"
    )
