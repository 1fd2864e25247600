"""Per-sample records: a typed, versioned record type, and reading a record log back safely.

One :class:`SampleRecord` per evaluated image holds every prediction the summary is computed
from. Records are appended to ``samples.jsonl`` one batch at a time; :func:`load_records`
reads such a log back for ``--resume``, dropping what a crash can leave behind (a torn last
line, the records of a batch that was not written completely) and refusing records of another
run or of another record version.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORD_VERSION = 2
"""Version of the record layout; bumped whenever a field changes meaning."""


@dataclass(frozen=True)
class Perturbation:
    """Size of one adversarial perturbation and the undefended classifier's verdict on it.

    Attributes:
        linf: ``max |adv - x|``.
        l2: ``||adv - x||_2`` over all pixels and channels.
        pred: prediction of the undefended classifier on the adversarial image.
    """

    linf: float
    l2: float
    pred: int


@dataclass(frozen=True)
class Quality:
    """Image quality of the purified clean image (``None`` where undefined)."""

    psnr: float | None
    ssim: float | None


@dataclass
class SampleRecord:
    """Everything recorded about one sample.

    Predictions of a defense are lists with one entry per evaluation draw (one entry for a
    deterministic defense, ``eval_draws`` entries for a randomised one).

    Attributes:
        run: the run id (a record of another run is never mixed in).
        index: position of the sample in the dataset.
        id: sample id (file name or given id).
        label: true class.
        batch: index of the batch window the sample belongs to.
        batch_n: number of samples recorded for that batch (to detect a partial batch).
        classifier_clean: prediction of the undefended classifier on the clean image.
        clean: defense -> predictions on the purified clean image.
        adv: setting -> attack key -> defense -> predictions on the purified adversarial image.
        perturbation: setting -> attack key -> defense -> :class:`Perturbation` of the
            adversarial example scored for that defense (in the gray-box setting every defense
            sees the same example).
        quality: defense -> :class:`Quality` of the purified clean image.
        v: :data:`RECORD_VERSION`.
    """

    run: str
    index: int
    id: str
    label: int
    batch: int
    batch_n: int
    classifier_clean: int
    clean: dict[str, list[int]] = field(default_factory=dict)
    adv: dict[str, dict[str, dict[str, list[int]]]] = field(default_factory=dict)
    perturbation: dict[str, dict[str, dict[str, Perturbation]]] = field(default_factory=dict)
    quality: dict[str, Quality] = field(default_factory=dict)
    v: int = RECORD_VERSION

    # ------------------------------------------------------------------ flags
    def correct_clean(self, defense: str) -> list[bool]:
        """Per draw: is the purified clean image classified correctly?"""
        return [p == self.label for p in self.clean[defense]]

    def correct_adv(self, setting: str, key: str, defense: str) -> list[bool]:
        """Per draw: is the purified adversarial image classified correctly?"""
        return [p == self.label for p in self.adv[setting][key][defense]]

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (one line of ``samples.jsonl``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SampleRecord:
        """Rebuild a record from :meth:`to_json` output.

        Raises:
            ValueError: another record version, or a missing or malformed field.
        """
        v = obj.get("v")
        if v != RECORD_VERSION:
            raise ValueError(f"record version {v!r}, expected {RECORD_VERSION}")
        try:
            return cls(
                run=str(obj["run"]),
                index=int(obj["index"]),
                id=str(obj["id"]),
                label=int(obj["label"]),
                batch=int(obj["batch"]),
                batch_n=int(obj["batch_n"]),
                classifier_clean=int(obj["classifier_clean"]),
                clean={d: [int(p) for p in ps] for d, ps in obj["clean"].items()},
                adv={
                    s: {k: {d: [int(p) for p in ps] for d, ps in by_d.items()} for k, by_d in by_k.items()}
                    for s, by_k in obj["adv"].items()
                },
                perturbation={
                    s: {
                        k: {
                            d: Perturbation(float(p["linf"]), float(p["l2"]), int(p["pred"]))
                            for d, p in by_d.items()
                        }
                        for k, by_d in by_k.items()
                    }
                    for s, by_k in obj["perturbation"].items()
                },
                quality={d: Quality(q["psnr"], q["ssim"]) for d, q in obj["quality"].items()},
                v=RECORD_VERSION,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed record: {exc!r}") from None


class DuplicateSampleError(ValueError):
    """Two records share a sample id: a summary over them would count a sample twice."""


def check_unique(records: Iterable[SampleRecord]) -> None:
    """Refuse records that repeat a sample id.

    Raises:
        DuplicateSampleError: naming the repeated ids.
    """
    seen: set[str] = set()
    dup: list[str] = []
    for r in records:
        if r.id in seen:
            dup.append(r.id)
        seen.add(r.id)
    if dup:
        shown = ", ".join(sorted(set(dup))[:5])
        raise DuplicateSampleError(
            f"{len(dup)} duplicate sample record(s) (ids {shown}); every sample must be recorded once"
        )


@dataclass
class LoadedRecords:
    """What :func:`load_records` found.

    Attributes:
        records: complete batches of the run, in file order, one record per sample.
        dropped: number of records dropped (partial batch, duplicates).
        torn: whether a torn last line (a crash mid-write) was dropped.
        other_runs: run ids of records that belong to another run.
        bad_version: number of lines of another record version.
    """

    records: list[SampleRecord]
    dropped: int = 0
    torn: bool = False
    other_runs: set[str] = field(default_factory=set)
    bad_version: int = 0


def load_records(path: str | Path, run_id: str) -> LoadedRecords:
    """Read a record log back: keep only complete batches of ``run_id``, each sample once.

    A line that does not end in a newline or does not parse is a torn tail (nothing after it
    is trusted). A batch is complete when as many distinct samples of it are present as its
    records say (``batch_n``); a batch with fewer is dropped so it is evaluated again.
    """
    p = Path(path)
    out = LoadedRecords(records=[])
    if not p.exists():
        return out
    parsed: list[SampleRecord] = []
    with p.open("rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                out.torn = True
                break
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError:
                out.torn = True
                break
            if not isinstance(obj, dict):
                out.torn = True
                break
            if obj.get("run") != run_id:
                out.other_runs.add(str(obj.get("run")))
                continue
            try:
                parsed.append(SampleRecord.from_json(obj))
            except ValueError:
                out.bad_version += 1
    by_batch: dict[int, dict[str, SampleRecord]] = {}
    n_of: dict[int, int] = {}
    for r in parsed:
        group = by_batch.setdefault(r.batch, {})
        if r.id in group:
            out.dropped += 1
            continue
        group[r.id] = r
        n_of[r.batch] = r.batch_n
    for b, group in by_batch.items():
        if len(group) == n_of[b]:
            out.records.extend(group.values())
        else:
            out.dropped += len(group)
    out.records.sort(key=lambda r: r.index)
    check_unique(out.records)
    return out
