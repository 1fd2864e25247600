"""Merging the shards of a run: ``results.json`` and the reports from the record files alone.

:func:`merge_run` (``srdefense merge RUN``) reads every record log of a run folder
(``samples.jsonl`` and ``samples-RANK-of-WORLD.jsonl``), checks that each belongs to the run of
``run.json``, keeps every sample once, checks that every dataset position is either recorded or
was reported unreadable (naming the shard that is missing or incomplete otherwise), and writes
``results.json`` atomically and the reports. Rank 0 calls it at the end of a sharded run; a
single process calls it too, so both produce the same numbers from the same records.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .card import CardInputs, report_card
from .errors import ConfigError
from .examples import load_examples
from .records import SampleRecord, load_records
from .report import write_report
from .results import Results, attacks_of, record_warnings, settings_of, summarize
from .shards import ShardState, card_from_json, read_run_file, records_name, shard_files
from .threats import create_threat_model

__all__ = ["EmptyEvaluationError", "MergeError", "build_results", "merge_run"]


class EmptyEvaluationError(ConfigError):
    """No sample could be evaluated (every item missing or unreadable, or an empty dataset)."""


class MergeError(ConfigError):
    """The shards of a run folder cannot be merged (another run, a missing or incomplete shard)."""


@dataclass
class _Key:
    key: str


class RunView:
    """What the report card needs of a :class:`~srdefense.evaluation.plan.Plan`, read off ``config``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.settings = settings_of(config)
        self.defenses = {d["name"]: None for d in config["defenses"]}
        self.runs = {s: [_Key(a["key"]) for a in attacks_of(config, s)] for s in self.settings}

    def adaptive(self, setting: str) -> bool:
        """Whether the attacker knows the defense in ``setting``."""
        return bool(create_threat_model(setting).adaptive)


def build_results(
    config: dict[str, Any],
    records: list[SampleRecord],
    *,
    card: CardInputs | None,
    warnings: list[dict[str, str]],
    data_warnings: list[dict[str, str]],
    run: dict[str, Any],
    examples: list[dict[str, Any]],
) -> Results:
    """The :class:`Results` of a run from its records and what its first batch measured.

    Raises:
        EmptyEvaluationError: no record.
    """
    if not records:
        reasons = "; ".join(w["message"] for w in data_warnings[:3])
        raise EmptyEvaluationError(
            "no sample could be evaluated"
            + (
                f" ({len(data_warnings)} unreadable: {reasons})"
                if data_warnings
                else " (the dataset is empty)"
            )
        )
    records = sorted(records, key=lambda r: r.index)
    tables = summarize(config, records)
    return Results(
        config=config,
        records=records,
        summary=tables["summary"],
        quality=tables["quality"],
        perturbation=tables["perturbation"],
        warnings=warnings + data_warnings + record_warnings(config, records),
        checks=report_card(RunView(config), records, card or CardInputs(), tables["summary"])  # type: ignore[arg-type]
        if config.get("card")
        else [],
        run=run,
        examples=examples,
    )


def _ranges(positions: list[int]) -> str:
    parts: list[str] = []
    start = prev = None
    for p in sorted(positions):
        if prev is not None and p == prev + 1:
            prev = p
            continue
        if start is not None:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
        start = prev = p
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    shown = parts[:6] + (["..."] if len(parts) > 6 else [])
    return ", ".join(shown)


def _check_coverage(
    run_dir: Path, config: dict[str, Any], world: int, records: list[SampleRecord], skipped: dict[int, str]
) -> None:
    n = config.get("data", {}).get("n")
    if n is None:
        return
    bs = int(config["batch_size"])
    covered = {r.index for r in records} | set(skipped)
    missing = [p for p in range(n) if p not in covered]
    if not missing:
        return
    existing = {f.path.name for f in shard_files(run_dir)}
    by_shard: dict[str, list[int]] = {}
    for p in missing:
        by_shard.setdefault(records_name((p // bs) % world, world), []).append(p)
    problems = []
    for name, pos in sorted(by_shard.items()):
        what = f"samples {_ranges(pos)} (batch window(s) {_ranges(sorted({p // bs for p in pos}))})"
        if name not in existing:
            problems.append(f"missing shard {run_dir / name}: {what} not recorded")
        else:
            problems.append(f"shard {run_dir / name} is incomplete: {what} not recorded")
    raise MergeError(
        "; ".join(problems) + f"; {len(missing)} of {n} samples missing: continue the run with --resume"
    )


def _sum_run(states: list[ShardState], world: int) -> dict[str, Any]:
    per_stage: dict[str, float] = {}
    for st in states:
        for k, v in st.run.get("seconds_per_stage", {}).items():
            per_stage[k] = per_stage.get(k, 0.0) + float(v)
    run: dict[str, Any] = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": max((float(st.run.get("seconds", 0.0)) for st in states), default=0.0),
        "seconds_per_stage": per_stage,
        "resumed_samples": sum(int(st.run.get("resumed_samples", 0)) for st in states),
        "attack_cache_hits": sum(int(st.run.get("attack_cache_hits", 0)) for st in states),
        "attack_cache_misses": sum(int(st.run.get("attack_cache_misses", 0)) for st in states),
    }
    if world > 1:
        run["world_size"] = world
    return run


def merge_run(
    run_dir: str | Path, *, report: bool = True, examples: list[dict[str, Any]] | None = None
) -> Results:
    """Merge the shards of a run folder into ``results.json`` (atomically) and the reports.

    Args:
        run_dir: the run folder (``--out`` of the evaluation).
        report: also write ``report.md`` and ``report.html``.
        examples: the report's example images (default: read from ``run_dir/examples``).

    Returns:
        The merged :class:`Results`.

    Raises:
        MergeError: a record or state file of another run (naming the file), no record file,
            or samples neither recorded nor reported unreadable (naming the missing or
            incomplete shard).
        ConfigError: ``run.json`` missing or malformed.
        EmptyEvaluationError: nothing was recorded and nothing is missing (every image unreadable).
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise MergeError(f"{d}: not a folder")
    run = read_run_file(d)
    config = run["config"]
    run_id = str(config["run_id"])
    world = int(run["world"])
    files = shard_files(d)
    if not files:
        raise MergeError(f"{d}: no record file (samples.jsonl or samples-RANK-of-WORLD.jsonl)")
    records: list[SampleRecord] = []
    seen: set[str] = set()
    states: list[ShardState] = []
    skipped: dict[int, str] = {}
    for f in files:
        loaded = load_records(f.path, run_id)
        if loaded.other_runs:
            raise MergeError(
                f"{f.path}: holds records of run {', '.join(sorted(loaded.other_runs))}, "
                f"not of run {run_id} ({d / 'run.json'}); it does not belong to this run"
            )
        if f.state.exists():
            st = ShardState.load(f.state)
            if st.run_id != run_id:
                raise MergeError(
                    f"{f.state}: state of run {st.run_id}, not of run {run_id}; "
                    "it does not belong to this run"
                )
            states.append(st)
            skipped.update(st.skipped)
        for r in loaded.records:
            if r.id not in seen:
                seen.add(r.id)
                records.append(r)
    _check_coverage(d, config, world, records, skipped)
    first = run.get("first_batch")
    if first is None and records:
        raise MergeError(
            f"{d / 'run.json'}: rank 0 did not finish its first batch; continue the run with --resume"
        )
    first = first or {}
    card = card_from_json(first["card"]) if first.get("card") else None
    current = sorted((s for s in states if s.world == world), key=lambda s: s.rank)
    warnings = list(first.get("warnings", [])) + [w for s in current for w in s.warnings]
    data_warnings = [{"check": "data", "message": m} for _, m in sorted(skipped.items())]
    if examples is None:
        examples = load_examples(d)
    results = build_results(
        config,
        records,
        card=card,
        warnings=warnings,
        data_warnings=data_warnings,
        run=_sum_run(current, world),
        examples=examples,
    )
    results.save(d)
    if report:
        write_report(results, d)
    return results
