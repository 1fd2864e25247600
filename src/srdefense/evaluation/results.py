"""Evaluation results: per-sample records, the summary computed from them, saving and loading.

Every number of the summary is computed from the per-sample records alone, in the order of the
data, so a resumed run (records read back from ``samples.jsonl``) ends with exactly the numbers
of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .eps import format_eps
from .examples import load_examples
from .io import atomic_write_json
from .records import SampleRecord, check_unique
from .shards import load_run_records
from .stats import wilson_interval

RESULTS_FORMAT = "srdefense.results/2"
CLEAN = "none"
"""The ``attack`` value of clean-image rows."""
WORST = "worst-case"
"""The ``attack`` value of worst-case rows (a sample is robust only if correct everywhere)."""


ROBUST = "robust"
"""The ``attack`` value of robust-accuracy rows (setting ``adaptive``): correct clean and under
every attack of every setting that was run."""
ADAPTIVE = "adaptive"
"""The ``setting`` value of robust-accuracy rows."""


def _row(
    defense: str,
    attack: str,
    eps: float | None,
    key: str,
    setting: str,
    column: str,
    flags: list[list[bool]],
    **extra: Any,
) -> dict[str, Any]:
    """A summary row from per-sample, per-draw flags.

    ``accuracy`` counts a sample as correct only if it is correct in every draw (worst of K);
    ``accuracy_mean`` is the mean over draws (equal to ``accuracy`` for one draw).
    """
    n = len(flags)
    correct = sum(all(f) for f in flags)
    lo, hi = wilson_interval(correct, n)
    draws = max((len(f) for f in flags), default=1)
    mean = sum(sum(f) / len(f) for f in flags) / n if n else None
    return {
        "defense": defense,
        "attack": attack,
        "eps": eps,
        "key": key,
        "setting": setting,
        "column": column,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [lo, hi],
        "draws": draws,
        "accuracy_mean": mean,
        **extra,
    }


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def settings_of(config: dict[str, Any]) -> list[str]:
    """The settings of a run (``settings``, or the single ``setting`` of older runs)."""
    return list(config.get("settings") or [config["setting"]])


def attacks_of(config: dict[str, Any], setting: str) -> list[dict[str, Any]]:
    """The attack configurations run in ``setting``."""
    by_key = {a["key"]: a for a in config["attacks"]}
    keys = config.get("attacks_by_setting", {}).get(setting)
    return [by_key[k] for k in keys] if keys is not None else list(config["attacks"])


def summarize(config: dict[str, Any], records: list[SampleRecord]) -> dict[str, list[dict[str, Any]]]:
    """Compute the summary tables from per-sample records.

    Rows of ``summary``, per defense:

    - ``setting="clean"``, ``attack="none"``: clean accuracy of the defended classifier;
    - per setting, one row per attack configuration (``column`` ``setting/key``);
    - per setting, ``attack="worst-case"``: a sample is robust only if it is classified
      correctly clean *and* under every attack of the group (AutoAttack's per-sample flags); one
      group per budget eps, and one over every attack of the setting when that differs;
    - ``setting="adaptive"``, ``attack="robust"``: robust accuracy, correct clean and under
      every attack in every setting that was run (per budget, and over everything).

    A randomised defense is scored in several draws: a sample counts as correct only if it is
    correct in all of them (``accuracy``); ``accuracy_mean`` is the mean over draws.

    Raises:
        DuplicateSampleError: two records share a sample id.
    """
    check_unique(records)
    records = sorted(records, key=lambda r: r.index)
    settings = settings_of(config)
    defenses = [d["name"] for d in config["defenses"]]
    summary: list[dict[str, Any]] = []
    for d in defenses:
        clean = [r.correct_clean(d) for r in records]
        summary.append(_row(d, CLEAN, None, "clean", "clean", "clean", clean))
        everything: list[tuple[str, dict[str, Any]]] = []
        for s in settings:
            attacks = attacks_of(config, s)
            for a in attacks:
                flags = [r.correct_adv(s, a["key"], d) for r in records]
                summary.append(_row(d, a["name"], a["eps"], a["key"], s, f"{s}/{a['key']}", flags))
                everything.append((s, a))
            for eps, keys, label in worst_case_groups(attacks):
                flags = [
                    [all(r.correct_clean(d)) and all(all(r.correct_adv(s, k, d)) for k in keys)]
                    for r in records
                ]
                summary.append(_row(d, WORST, eps, label, s, f"{s}/{label}", flags, attacks=keys))
        for eps, pairs, label in robust_groups(everything):
            flags = [
                [all(r.correct_clean(d)) and all(all(r.correct_adv(s, k, d)) for s, k in pairs)]
                for r in records
            ]
            summary.append(
                _row(d, ROBUST, eps, label, ADAPTIVE, label, flags, attacks=[f"{s}/{k}" for s, k in pairs])
            )
    quality = []
    for dinfo in config["defenses"]:
        d = dinfo["name"]
        quality.append(
            {
                "defense": d,
                "n": len(records),
                "psnr": _mean([r.quality[d].psnr for r in records]),
                "ssim": _mean([r.quality[d].ssim for r in records]),
                "reference": (
                    "clean image"
                    if dinfo.get("scale", 1) == 1
                    else "clean image upscaled bicubic to the same size"
                ),
            }
        )
    perturbation = []
    first = defenses[0]
    for s in settings:
        adaptive = s != "gray-box"
        for a in attacks_of(config, s):
            for d in defenses if adaptive else [first]:
                pert = [r.perturbation[s][a["key"]][d] for r in records]
                linf = [p.linf for p in pert]
                l2 = [p.l2 for p in pert]
                undefended = [p.pred == r.label for p, r in zip(pert, records, strict=True)]
                clean_ok = [r.classifier_clean == r.label for r in records]
                perturbation.append(
                    {
                        "setting": s,
                        "defense": d if adaptive else None,
                        "attack": a["name"],
                        "eps": a["eps"],
                        "key": a["key"],
                        "n": len(records),
                        "linf_mean": _mean(list(linf)),
                        "linf_max": max(linf) if linf else None,
                        "l2_mean": _mean(list(l2)),
                        "l2_median": statistics.median(l2) if l2 else None,
                        "classifier_accuracy": sum(undefended) / len(records) if records else None,
                        "classifier_clean_accuracy": sum(clean_ok) / len(records) if records else None,
                    }
                )
    return {"summary": summary, "quality": quality, "perturbation": perturbation}


def robust_groups(
    pairs: list[tuple[str, dict[str, Any]]],
) -> list[tuple[float | None, list[tuple[str, str]], str]]:
    """Groups of ``(setting, key)`` for robust accuracy: one per eps, plus one over everything."""
    by_eps: dict[float, list[tuple[str, str]]] = {}
    for s, a in pairs:
        if a["eps"] is not None:
            by_eps.setdefault(a["eps"], []).append((s, a["key"]))
    groups: list[tuple[float | None, list[tuple[str, str]], str]] = [
        (e, ps, f"{ROBUST}@{format_eps(e)}") for e, ps in sorted(by_eps.items())
    ]
    every = [(s, a["key"]) for s, a in pairs]
    if every and not (len(groups) == 1 and groups[0][1] == every):
        groups.append((None, every, ROBUST))
    return groups


def worst_case_groups(attacks: list[dict[str, Any]]) -> list[tuple[float | None, list[str], str]]:
    """Groups of attack keys for the worst case: one per eps, plus one over all attacks.

    Returns:
        ``(eps, keys, label)`` triples; the all-attacks group has ``eps=None`` and label
        ``worst-case``; it is left out when it equals the only per-eps group.
    """
    by_eps: dict[float, list[str]] = {}
    for a in attacks:
        if a["eps"] is not None:
            by_eps.setdefault(a["eps"], []).append(a["key"])
    groups: list[tuple[float | None, list[str], str]] = [
        (e, keys, f"{WORST}@{format_eps(e)}") for e, keys in sorted(by_eps.items())
    ]
    all_keys = [a["key"] for a in attacks]
    if not all_keys:
        return []
    if not (len(groups) == 1 and groups[0][1] == all_keys):
        groups.append((None, all_keys, WORST))
    return groups


def record_warnings(config: dict[str, Any], records: list[SampleRecord]) -> list[dict[str, str]]:
    """Warnings that follow from the records (budget violations, attacks that changed nothing)."""
    out: list[dict[str, str]] = []
    if not records:
        return out
    for s in settings_of(config):
        for a in attacks_of(config, s):
            key, eps, norm = a["key"], a["eps"], a.get("norm")
            perts = [p for r in records for p in r.perturbation[s][key].values()]
            if eps is not None and norm in ("linf", "l2"):
                worst = max(getattr(p, norm) for p in perts)
                if worst > eps * (1 + 1e-5) + 1e-6:
                    out.append(
                        {
                            "check": "budget",
                            "message": f"attack {s}/{key}: perturbation {norm} norm up to {worst:.6g} "
                            f"exceeds eps {eps:.6g}",
                        }
                    )
            if s == "gray-box":
                changed = sum(
                    next(iter(r.perturbation[s][key].values())).pred != r.classifier_clean for r in records
                )
                moved = sum(next(iter(r.perturbation[s][key].values())).linf > 0 for r in records)
                if changed == 0 and any(r.classifier_clean == r.label for r in records):
                    out.append(
                        {
                            "check": "attack-effect",
                            "message": (
                                f"attack {key} changed no prediction of the classifier "
                                f"({moved}/{len(records)} images perturbed): a broken attack, "
                                "a budget too small, or masked gradients"
                            ),
                        }
                    )
    return out


@dataclass
class Results:
    """The outcome of :func:`srdefense.evaluation.evaluate`.

    Attributes:
        config: everything needed to rerun (versions, classifier, defenses, attacks, settings,
            data, seed, resolution); also the experiment options when known.
        records: one :class:`~srdefense.evaluation.records.SampleRecord` per sample, in data order.
        summary: accuracy rows (see :func:`summarize`).
        quality: PSNR/SSIM of purified clean images per defense.
        perturbation: perturbation norms and undefended accuracy per setting and attack.
        warnings: sanity-check findings (``check``, ``message``).
        checks: the gradient-masking report card (one entry per defense and check).
        run: facts about this execution that do not affect the numbers (time, cache hits).
        examples: images for the report's grid (not saved in ``results.json``).
    """

    config: dict[str, Any]
    records: list[SampleRecord]
    summary: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    perturbation: list[dict[str, Any]]
    warnings: list[dict[str, str]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    # ------------------------------------------------------------------ queries
    @property
    def defenses(self) -> list[str]:
        """Defense names, in evaluation order."""
        return [d["name"] for d in self.config["defenses"]]

    @property
    def attacks(self) -> list[dict[str, Any]]:
        """Attack configurations (``key``, ``name``, ``eps``, ``norm``, ``config``)."""
        return list(self.config["attacks"])

    @property
    def settings(self) -> list[str]:
        """The threat models that were run."""
        return settings_of(self.config)

    @property
    def setting(self) -> str:
        """The threat models, joined (``gray-box`` or ``gray-box+white-box``)."""
        return "+".join(self.settings)

    def columns(self) -> list[str]:
        """Summary columns in display order: ``clean``, ``setting/key`` per attack, worst cases, robust."""
        cols: list[str] = []
        for r in self.summary:
            if r["column"] not in cols:
                cols.append(r["column"])
        return cols

    def row(self, defense: str, key: str, setting: str | None = None) -> dict[str, Any]:
        """The summary row of ``defense`` for a column (``clean``, ``gray-box/fgsm@4/255``, ...).

        A bare attack key (``fgsm@4/255``) names the row when one setting has it (or when
        ``setting`` says which).

        Raises:
            KeyError: no such row, or a bare key that several settings share (listing them).
        """
        rows = [r for r in self.summary if r["defense"] == defense and r["column"] == key]
        if not rows:
            rows = [
                r
                for r in self.summary
                if r["defense"] == defense
                and r["key"] == key
                and (setting is None or r["setting"] == setting)
            ]
        if len(rows) == 1:
            return rows[0]
        if len(rows) > 1:
            raise KeyError(
                f"key {key!r} of defense {defense!r} exists in several settings "
                f"({', '.join(r['setting'] for r in rows)}); name the column, e.g. {rows[0]['column']!r}"
            )
        raise KeyError(
            f"no summary row for defense {defense!r}, key {key!r}; defenses: {', '.join(self.defenses)}; "
            f"columns: {', '.join(self.columns())}"
        )

    def accuracy(
        self, defense: str, attack: str = CLEAN, eps: float | None = None, setting: str | None = None
    ) -> float:
        """Accuracy of ``defense`` under ``attack`` at ``eps`` (``attack="none"``: clean).

        ``setting`` is needed where several settings ran the attack (``"adaptive"`` for robust).

        Raises:
            KeyError: no such row, or several settings and no ``setting``.
        """
        rows = [
            r
            for r in self.summary
            if r["defense"] == defense
            and r["attack"] == attack
            and _same_eps(r["eps"], eps)
            and (setting is None or r["setting"] == setting)
        ]
        if len(rows) > 1:
            raise KeyError(
                f"attack {attack!r} of defense {defense!r} ran in several settings "
                f"({', '.join(r['setting'] for r in rows)}); pass setting="
            )
        if not rows:
            raise KeyError(
                f"no summary row for defense {defense!r}, attack {attack!r}, eps {eps!r}, setting {setting!r}"
            )
        r = rows[0]
        return float(r["accuracy"]) if r["accuracy"] is not None else math.nan

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json`` (records are in ``samples.jsonl``)."""
        return {
            "format": RESULTS_FORMAT,
            "config": self.config,
            "summary": self.summary,
            "quality": self.quality,
            "perturbation": self.perturbation,
            "checks": self.checks,
            "warnings": self.warnings,
            "run": self.run,
        }

    def save(self, out: str | Path) -> Path:
        """Write ``out/results.json`` atomically; returns its path."""
        path = Path(out) / "results.json"
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, out: str | Path) -> Results:
        """Read a run folder (``results.json``, the record logs and the example images)."""
        d = Path(out)
        data = json.loads((d / "results.json").read_text(encoding="utf-8"))
        if data.get("format") != RESULTS_FORMAT:
            raise ValueError(
                f"{d / 'results.json'}: expected format {RESULTS_FORMAT}, got {data.get('format')!r}"
            )
        run_id = data["config"].get("run_id")
        records = load_run_records(d, str(run_id))  # samples.jsonl, or every rank's shard
        return cls(
            config=data["config"],
            records=records,
            summary=data["summary"],
            quality=data["quality"],
            perturbation=data["perturbation"],
            warnings=data.get("warnings", []),
            checks=data.get("checks", []),
            run=data.get("run", {}),
            examples=load_examples(d),
        )


def _same_eps(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(1.0, abs(a))
