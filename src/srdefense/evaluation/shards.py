"""The files of a run folder: one record log and one state file per rank, and the run file.

- ``samples.jsonl`` (a single process) or ``samples-RANK-of-WORLD.jsonl`` (rank ``RANK`` of a
  sharded run): the :class:`~srdefense.evaluation.records.SampleRecord` lines of the batches the
  process evaluated, appended as each batch finishes.
- ``samples.state.json`` / ``samples-RANK-of-WORLD.state.json`` (written atomically after each
  batch): the run id, the unreadable samples met (with the reason) and the process's warnings
  and counters, so a merge reports exactly what a single process would.
- ``run.json`` (rank 0): the ``config`` block, the world size and what the first batch measured
  (the classifier checks and the report card's inputs), so :func:`.merge.merge_run` can rebuild
  ``results.json`` and the reports from the files alone.

Records are keyed by sample: a run started with one world size can be resumed with another,
since every rank reads every record file to learn which batch windows are done.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .card import CardInputs
from .distributed import Shard
from .errors import ConfigError
from .io import JsonlWriter, atomic_write_json, atomic_write_text, jsonl_line
from .records import LoadedRecords, SampleRecord, load_records

RUN_FILE = "run.json"
RUN_FORMAT = "srdefense.run/1"
STATE_FORMAT = "srdefense.shard-state/1"
_RECORDS_RE = re.compile(r"^samples(?:-(\d+)-of-(\d+))?\.jsonl$")


def records_name(rank: int, world: int) -> str:
    """Record log of rank ``rank`` of ``world`` (``samples.jsonl`` for a world of one)."""
    return "samples.jsonl" if world == 1 else f"samples-{rank}-of-{world}.jsonl"


def state_name(rank: int, world: int) -> str:
    """State file of rank ``rank`` of ``world``."""
    return records_name(rank, world).removesuffix(".jsonl") + ".state.json"


@dataclass(frozen=True)
class ShardFile:
    """A record log found in a run folder, with the rank and world size its name says."""

    path: Path
    rank: int
    world: int

    @property
    def state(self) -> Path:
        """Its state file."""
        return self.path.with_name(state_name(self.rank, self.world))


def shard_files(run_dir: str | Path) -> list[ShardFile]:
    """The record logs of a run folder, ordered by world size, then rank."""
    out: list[ShardFile] = []
    d = Path(run_dir)
    if not d.is_dir():
        return out
    for p in d.iterdir():
        m = _RECORDS_RE.match(p.name)
        if m and p.is_file():
            rank, world = (int(m.group(1)), int(m.group(2))) if m.group(1) else (0, 1)
            out.append(ShardFile(p, rank, world))
    return sorted(out, key=lambda f: (f.world, f.rank))


# ---------------------------------------------------------------------------- JSON of non-finite floats
def _enc(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"float": repr(obj)}
    if isinstance(obj, dict):
        return {k: _enc(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_enc(v) for v in obj]
    return obj


def _dec(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"float"} and isinstance(obj["float"], str):
            return float(obj["float"])
        return {k: _dec(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_dec(v) for v in obj]
    return obj


def card_to_json(card: CardInputs) -> dict[str, Any]:
    """A JSON-able form of :class:`CardInputs` (tuple keys become lists)."""
    return _enc(
        {
            "n": card.n,
            "randomness": card.randomness,
            "gradients": [[list(k), v] for k, v in card.gradients.items()],
            "large_eps": [[list(k), v] for k, v in card.large_eps.items()],
            "iterations": [[list(k), v] for k, v in card.iterations.items()],
        }
    )


def card_from_json(obj: dict[str, Any]) -> CardInputs:
    """Inverse of :func:`card_to_json`."""
    o = _dec(obj)
    return CardInputs(
        n=int(o["n"]),
        randomness=dict(o["randomness"]),
        gradients={tuple(k): v for k, v in o["gradients"]},
        large_eps={tuple(k): v for k, v in o["large_eps"]},
        iterations={tuple(k): v for k, v in o["iterations"]},
    )


# ---------------------------------------------------------------------------- run.json
def write_run_file(
    run_dir: Path,
    config: dict[str, Any],
    world: int,
    warnings: list[dict[str, str]] | None = None,
    card: CardInputs | None = None,
    first_batch: bool = False,
) -> None:
    """Write ``run.json`` atomically (rank 0: at the start, then after the first batch)."""
    atomic_write_json(
        run_dir / RUN_FILE,
        {
            "format": RUN_FORMAT,
            "run_id": config["run_id"],
            "world": world,
            "config": _enc(config),
            "first_batch": None
            if not first_batch
            else {"warnings": warnings or [], "card": card_to_json(card) if card is not None else None},
        },
    )


def read_run_file(run_dir: Path) -> dict[str, Any]:
    """Read ``run.json``.

    Raises:
        ConfigError: missing or malformed, naming the file.
    """
    p = run_dir / RUN_FILE
    if not p.exists():
        raise ConfigError(f"{p}: missing; rank 0 writes it when a run starts (is {run_dir} a run folder?)")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{p}: unreadable ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != RUN_FORMAT:
        raise ConfigError(f"{p}: expected format {RUN_FORMAT}")
    obj["config"] = _dec(obj["config"])
    return obj


# ---------------------------------------------------------------------------- per-rank state
@dataclass
class ShardState:
    """What a rank writes besides its records (``*.state.json``).

    Attributes:
        run_id: the run.
        rank: its rank.
        world: its world size.
        skipped: dataset position -> why that sample was unreadable.
        warnings: the rank's own warnings (resume, cache).
        run: counters (seconds, per-stage seconds, resumed samples, cache hits and misses).
        complete: whether the rank finished its share.
    """

    run_id: str
    rank: int
    world: int
    skipped: dict[int, str] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    complete: bool = False

    def save(self, path: Path) -> None:
        """Write atomically."""
        obj = asdict(self)
        obj["skipped"] = [[p, m] for p, m in sorted(self.skipped.items())]
        atomic_write_json(path, {"format": STATE_FORMAT, **obj})

    @classmethod
    def load(cls, path: Path) -> ShardState:
        """Read a state file.

        Raises:
            ConfigError: unreadable or malformed, naming the file.
        """
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("format") != STATE_FORMAT:
                raise ValueError(f"expected format {STATE_FORMAT}, got {obj.get('format')!r}")
            return cls(
                run_id=str(obj["run_id"]),
                rank=int(obj["rank"]),
                world=int(obj["world"]),
                skipped={int(p): str(m) for p, m in obj["skipped"]},
                warnings=list(obj["warnings"]),
                run=dict(obj["run"]),
                complete=bool(obj["complete"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{path}: unreadable shard state ({exc})") from None


# ---------------------------------------------------------------------------- the log of one rank
def _resume_warning(loaded: LoadedRecords, name: str) -> dict[str, str] | None:
    if not (loaded.torn or loaded.dropped or loaded.bad_version):
        return None
    return {
        "check": "resume",
        "message": f"resume: dropped {loaded.dropped} record(s) of incomplete batches"
        + (", a torn last line" if loaded.torn else "")
        + (f", {loaded.bad_version} record(s) of another version" if loaded.bad_version else "")
        + (f" in {name}" if name != "samples.jsonl" else "")
        + "; those batches were evaluated again",
    }


class ShardLog:
    """The records of one rank: in memory, and in its own files when there is a run folder.

    A fresh run starts its log empty (rank 0 also removes the record and state files of other
    world sizes, so no stale shard is merged). With ``resume``, every record file of the folder
    is read (a record of another run is refused): a batch window recorded completely in any of
    them is done; the rank's own log keeps exactly its complete batches and grows from there.

    Args:
        run_dir: the run folder (``None``: records kept in memory only).
        run_id: the run.
        shard: this process's share.
        resume: continue the records already in ``run_dir``.

    Raises:
        ConfigError: ``resume`` over records of another run (naming the file).
    """

    def __init__(self, run_dir: Path | None, run_id: str, shard: Shard, *, resume: bool) -> None:
        self.run_dir = run_dir
        self.shard = shard
        self.records: list[SampleRecord] = []
        self.done_ids: set[str] = set()
        self.done_windows: set[int] = set()
        self.state = ShardState(run_id=run_id, rank=shard.rank, world=shard.world)
        self.resumed = 0
        self.resume_warnings: list[dict[str, str]] = []
        self._writer: JsonlWriter | None = None
        if run_dir is None:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        own = run_dir / records_name(shard.rank, shard.world)
        self.state_path = run_dir / state_name(shard.rank, shard.world)
        if resume:
            self._resume(run_dir, own, run_id)
        elif shard.leader:
            for f in shard_files(run_dir):
                if f.world != shard.world:
                    f.path.unlink(missing_ok=True)
                    f.state.unlink(missing_ok=True)
        self._writer = JsonlWriter(own, truncate_to=None if resume else 0)
        self.state.save(self.state_path)

    def _resume(self, run_dir: Path, own: Path, run_id: str) -> None:
        seen: set[str] = set()
        for f in shard_files(run_dir):
            loaded = load_records(f.path, run_id)
            if loaded.other_runs:
                raise ConfigError(
                    f"resume: {f.path} holds records of a different run (classifier, defenses, attacks, "
                    "settings, data, batch size or seed changed); use a new output folder or run "
                    "without resume"
                )
            mine = f.path == own
            if mine or (self.shard.leader and f.world != self.shard.world):
                w = _resume_warning(loaded, f.path.name)
                if w is not None:
                    self.resume_warnings.append(w)
            for r in loaded.records:
                if r.id in seen:
                    continue
                seen.add(r.id)
                self.done_windows.add(r.batch)
                if self.shard.owns(r.batch):
                    self.records.append(r)
            if mine:
                # the log keeps exactly its complete batches; new batches are appended after them
                atomic_write_text(own, "".join(jsonl_line(r.to_json()) for r in loaded.records))
                if f.state.exists():
                    old = ShardState.load(f.state)
                    if old.run_id == run_id:
                        self.state.skipped.update(old.skipped)
        self.done_ids = seen
        self.resumed = len(self.records)

    def done(self, window: int) -> bool:
        """Whether a batch window is recorded completely (in any record file)."""
        return window in self.done_windows

    def add(self, records: list[SampleRecord], skipped: list[tuple[int, str]]) -> None:
        """Record a finished batch (durably, when there is a run folder)."""
        if self._writer is not None and records:
            self._writer.write(r.to_json() for r in records)
        self.records.extend(records)
        self.done_ids.update(r.id for r in records)
        self.skip(skipped)

    def skip(self, skipped: list[tuple[int, str]]) -> None:
        """Remember unreadable samples (saved in the state file)."""
        if not skipped:
            return
        self.state.skipped.update(dict(skipped))
        if self._writer is not None:
            self.state.save(self.state_path)

    def save_state(self, warnings: list[dict[str, str]], run: dict[str, Any], complete: bool) -> None:
        """Write the state file with the rank's warnings and counters."""
        self.state.warnings = self.resume_warnings + list(warnings)
        self.state.run = run
        self.state.complete = complete
        if self._writer is not None:
            self.state.save(self.state_path)

    def close(self) -> None:
        """Close the record log."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def load_run_records(run_dir: str | Path, run_id: str) -> list[SampleRecord]:
    """The complete batches of ``run_id`` in every record file of a folder, each sample once."""
    seen: set[str] = set()
    out: list[SampleRecord] = []
    for f in shard_files(run_dir):
        for r in load_records(f.path, run_id).records:
            if r.id not in seen:
                seen.add(r.id)
                out.append(r)
    return sorted(out, key=lambda r: r.index)
