"""Sharded evaluation: torchrun ranks (gloo on the CPU), merge, resume across world sizes, workers.

The torchrun tests launch ``tests/_dist_run.py`` as two gloo ranks with one thread each and
compare their merged ``results.json`` with one process evaluating the same run with one
thread in this process (same kernels, same batch windows: the numbers must be identical).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import _eval_helpers
from _dist_run import BATCH, N_IMAGES, TinyNet, defenses, run
from srdefense.evaluation import ConfigError, evaluate
from srdefense.evaluation.distributed import Shard, resolve_shard_device, shard_from_env
from srdefense.evaluation.merge import MergeError, merge_run
from srdefense.evaluation.records import load_records

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
COMPARED = ("summary", "quality", "perturbation", "checks", "warnings")


_one_thread = _eval_helpers._one_thread  # tiny tensors: one thread


def results_of(path: Path) -> dict[str, Any]:
    return json.loads((path / "results.json").read_text())


def torchrun(out: Path, setting: str, *args: str, nproc: int = 2) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(SRC), str(TESTS)]),
    }
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone"]
    return subprocess.run(
        [*cmd, str(TESTS / "_dist_run.py"), str(out), setting, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One process, one thread: the results every sharded run must reproduce."""
    out = {}
    for setting in ("gray-box", "white-box"):
        d = tmp_path_factory.mktemp(f"ref-{setting}")
        run(d, setting)
        out[setting] = results_of(d)
    return out


def assert_same(got: dict[str, Any], ref: dict[str, Any]) -> None:
    for key in COMPARED:
        assert got[key] == ref[key], key
    assert got["config"]["run_id"] == ref["config"]["run_id"]


# ---------------------------------------------------------------------------- torchrun
@pytest.mark.parametrize(("setting", "workers"), [("gray-box", "1"), ("white-box", "0")])
def test_two_gloo_ranks_give_the_numbers_of_one_process(
    reference: dict[str, dict[str, Any]], tmp_path: Path, setting: str, workers: str
) -> None:
    proc = torchrun(tmp_path, setting, "--workers", workers)
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in tmp_path.glob("samples*.jsonl"))
    assert names == ["samples-0-of-2.jsonl", "samples-1-of-2.jsonl"]
    # every rank wrote only its own batch windows (b % 2 == rank)
    for rank in (0, 1):
        recs = load_records(tmp_path / f"samples-{rank}-of-2.jsonl", reference[setting]["config"]["run_id"])
        assert {r.batch % 2 for r in recs.records} == {rank}
        assert len(recs.records) == N_IMAGES // 2
    got = results_of(tmp_path)
    assert got["run"]["world_size"] == 2
    assert any(r["accuracy"] not in (0.0, 1.0) for r in got["summary"])  # not a degenerate run
    assert_same(got, reference[setting])
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.html").exists()


def test_sigkill_of_one_rank_then_resume_gives_the_same_numbers(
    reference: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    proc = torchrun(tmp_path, "gray-box", "--kill-rank", "1")
    assert proc.returncode != 0
    assert not (tmp_path / "results.json").exists()
    run_id = reference["gray-box"]["config"]["run_id"]
    killed = load_records(tmp_path / "samples-1-of-2.jsonl", run_id).records
    assert len(killed) == BATCH  # rank 1 died right after its first batch
    proc = torchrun(tmp_path, "gray-box", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = results_of(tmp_path)
    assert got["run"]["resumed_samples"] >= BATCH
    assert_same(got, reference["gray-box"])


# ---------------------------------------------------------------------------- shards in one process
def sharded(out: Path, world: int, setting: str = "gray-box", *, resume: bool = False) -> Any:
    """Ranks of a world run one after another without a process group (rank 0 last: it merges)."""
    res = None
    for rank in reversed(range(world)):
        res = run(out, setting, resume=resume, shard=Shard(rank=rank, world=world))
    return res


def test_resume_with_another_world_size(reference: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    part = run(tmp_path, "gray-box", shard=Shard(rank=1, world=2))  # windows 1, 3, 5 of 6
    assert sorted(r.batch for r in part.records) == [1, 1, 3, 3, 5, 5]
    res = sharded(tmp_path, 3, resume=True)  # windows 0, 2, 4 left; records keyed by sample
    assert res.run["resumed_samples"] == N_IMAGES // 2
    assert_same(results_of(tmp_path), reference["gray-box"])
    # and back to a single process: nothing left to do, the same numbers
    one = run(tmp_path, "gray-box", resume=True)
    assert one.run["resumed_samples"] == N_IMAGES
    assert_same(results_of(tmp_path), reference["gray-box"])


@pytest.fixture()
def two_shards(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    sharded(d, 2)
    return d


def test_merge_rebuilds_results_from_the_shards(
    reference: dict[str, dict[str, Any]], two_shards: Path
) -> None:
    from srdefense.cli._app import app
    from srdefense.cli.main import _load_commands

    assert_same(results_of(two_shards), reference["gray-box"])
    (two_shards / "results.json").unlink()
    (two_shards / "report.md").unlink()
    _load_commands()
    res = CliRunner().invoke(app, ["merge", str(two_shards)])
    assert res.exit_code == 0, res.output
    assert f"merged {N_IMAGES} samples" in res.output
    assert_same(results_of(two_shards), reference["gray-box"])
    assert (two_shards / "report.md").exists()


def test_merge_refuses_a_shard_of_another_run(two_shards: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    model = TinyNet().eval()
    from _dist_run import build_data

    evaluate(model, defenses(), ["fgsm"], build_data(model), batch_size=BATCH, out=other, seed=1, card=False)
    shutil.copy(other / "samples.jsonl", two_shards / "samples-1-of-2.jsonl")
    with pytest.raises(MergeError, match=r"samples-1-of-2\.jsonl: holds records of run"):
        merge_run(two_shards)
    from srdefense.cli._app import app
    from srdefense.cli.main import _load_commands

    _load_commands()
    res = CliRunner().invoke(app, ["merge", str(two_shards)])
    assert res.exit_code == 2 and "samples-1-of-2.jsonl" in res.output


def test_merge_names_a_missing_or_incomplete_shard(two_shards: Path) -> None:
    shard = two_shards / "samples-1-of-2.jsonl"
    lines = shard.read_bytes().splitlines(keepends=True)
    shard.write_bytes(b"".join(lines[:-1]))  # the last batch (window 5) lost a record
    with pytest.raises(
        MergeError, match=r"samples-1-of-2\.jsonl is incomplete: samples 10-11 \(batch window"
    ):
        merge_run(two_shards)
    shard.unlink()
    with pytest.raises(MergeError, match=r"missing shard .*samples-1-of-2\.jsonl: samples 2-3, 6-7, 10-11"):
        merge_run(two_shards)


def test_resume_refuses_a_shard_of_another_run(two_shards: Path, tmp_path: Path) -> None:
    (two_shards / "samples-1-of-2.jsonl").write_text(
        (two_shards / "samples-1-of-2.jsonl").read_text().replace('"run":"', '"run":"x', 1)
    )
    with pytest.raises(ConfigError, match=r"samples-1-of-2\.jsonl holds records of a different run"):
        run(two_shards, "gray-box", resume=True, shard=Shard(rank=0, world=2))


def test_a_fresh_run_removes_the_shards_of_another_world_size(two_shards: Path) -> None:
    run(two_shards, "gray-box")  # a single process, no --resume: starts over
    assert sorted(p.name for p in two_shards.glob("samples*")) == ["samples.jsonl", "samples.state.json"]


# ---------------------------------------------------------------------------- input pipeline
def test_workers_skip_a_corrupt_image_and_give_the_same_numbers(tmp_path: Path) -> None:
    from srdefense.data import load_dataset
    from srdefense.data.samples import embedded_samples

    rows = []
    for i, (p, _) in enumerate(embedded_samples()[:5]):
        rows.append(f"{p},{i % 4}")
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    rows.insert(2, f"{bad},1")
    csv = tmp_path / "data.csv"
    csv.write_text("path,label\n" + "\n".join(rows) + "\n")
    ds = load_dataset(csv, size=16)
    model = TinyNet().eval()
    kw: dict[str, Any] = {"batch_size": 4, "card": False, "n_examples": 0}
    a = evaluate(model, defenses(), ["fgsm"], ds, out=tmp_path / "a", workers=0, **kw)
    b = evaluate(model, defenses(), ["fgsm"], ds, out=tmp_path / "b", workers=2, **kw)
    assert len(b.records) == 5
    assert [w for w in b.warnings if w["check"] == "data"] == [w for w in a.warnings if w["check"] == "data"]
    assert any("broken.jpg" in w["message"] for w in b.warnings if w["check"] == "data")
    assert b.summary == a.summary


# ---------------------------------------------------------------------------- environment
def test_shard_from_the_torchrun_environment() -> None:
    assert shard_from_env({}) == Shard()
    s = shard_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (s.rank, s.world, s.local_rank, s.group) == (3, 4, 1, True)
    assert s.windows(10) == [3, 7] and s.owns(7) and not s.owns(6)
    assert resolve_shard_device(s, "cuda") == torch.device("cuda", 1)
    assert resolve_shard_device(s, "cuda:0") == torch.device("cuda", 0)
    assert resolve_shard_device(s, "cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="RANK: expected an integer, got 'x'"):
        shard_from_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="RANK: not set"):
        shard_from_env({"WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="rank 2 of 2"):
        shard_from_env({"RANK": "2", "WORLD_SIZE": "2"})


def test_a_sharded_run_needs_an_output_folder() -> None:
    model = TinyNet().eval()
    x = torch.rand(4, 3, 16, 16)
    with pytest.raises(ConfigError, match="needs an output folder"):
        evaluate(
            model, ["none"], ["fgsm"], (x, torch.zeros(4, dtype=torch.long)), shard=Shard(rank=0, world=2)
        )


# ---------------------------------------------------------------------------- cache
def _hammer(root: str, key: str, value: float, n: int) -> None:
    from srdefense.evaluation.cache import AdversarialCache

    cache = AdversarialCache(root)
    for _ in range(n):
        cache.put(key, torch.full((2, 3, 8, 8), value))


def test_ranks_share_the_cache_without_torn_reads(tmp_path: Path) -> None:
    import multiprocessing as mp

    from srdefense.evaluation.cache import AdversarialCache

    ctx = mp.get_context("fork")
    key = "ab" + "0" * 62
    clean = torch.full((2, 3, 8, 8), 0.5)
    writers = [ctx.Process(target=_hammer, args=(str(tmp_path), key, v, 40)) for v in (0.5, 0.5 + 1 / 255)]
    for p in writers:
        p.start()
    reader = AdversarialCache(tmp_path)
    while any(p.is_alive() for p in writers):
        got = reader.get(key, clean, 4 / 255, "linf")
        if got is not None:
            assert float(got[0, 0, 0, 0]) in (0.5, float(torch.tensor(0.5 + 1 / 255)))
    for p in writers:
        p.join()
        assert p.exitcode == 0
    assert reader.rejected == []  # never a torn or half-written entry
    assert reader.get(key, clean, 4 / 255, "linf") is not None
    assert not list((tmp_path / "adv").rglob("*.tmp"))  # no temporary file left behind


def test_workers_come_from_the_cli_or_the_config_file() -> None:
    from srdefense.evaluation import build_config

    assert build_config({}, {"workers": None}).workers == 0  # default: decode in-process
    assert build_config({"workers": 3}, {"workers": None}).workers == 3
    assert build_config({"workers": 3}, {"workers": 1}).workers == 1  # the flag wins
    with pytest.raises(ConfigError, match="workers: expected an integer >= 0, got -1"):
        build_config({}, {"workers": -1}).validate()
