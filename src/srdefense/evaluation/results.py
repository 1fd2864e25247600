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

from .config import format_eps
from .io import atomic_write_json, read_jsonl
from .stats import wilson_interval

RESULTS_FORMAT = "srdefense.results/1"
CLEAN = "none"
"""The ``attack`` value of clean-image rows."""
WORST = "worst-case"
"""The ``attack`` value of worst-case rows (a sample is robust only if correct everywhere)."""


def _row(
    defense: str,
    attack: str,
    eps: float | None,
    key: str,
    setting: str,
    flags: list[bool],
    **extra: Any,
) -> dict[str, Any]:
    n = len(flags)
    correct = sum(flags)
    lo, hi = wilson_interval(correct, n)
    return {
        "defense": defense,
        "attack": attack,
        "eps": eps,
        "key": key,
        "setting": setting,
        "n": n,
        "correct": correct,
        "accuracy": correct / n if n else None,
        "ci95": [lo, hi],
        **extra,
    }


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


def summarize(config: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Compute the summary tables from per-sample records.

    Rows of ``summary`` (one per defense for each column):

    - ``attack="none"``: clean accuracy of the defended classifier;
    - one row per attack configuration (attack x eps);
    - ``attack="worst-case"``: a sample counts as robust only if it is classified correctly
      clean *and* under every attack of the group (AutoAttack's per-sample flags). One group
      per budget eps (the attacks with that eps), and one over every attack, minimal-norm ones
      included (``eps=None``, key ``worst-case``), when that differs from the single group.

    Args:
        config: the run's ``config`` block (defense and attack lists, setting).
        records: one dict per sample (see :func:`srdefense.evaluation.evaluate`).

    Returns:
        ``{"summary": [...], "quality": [...], "perturbation": [...]}``.
    """
    records = sorted(records, key=lambda r: r["index"])
    setting = config["setting"]
    defenses = [d["name"] for d in config["defenses"]]
    attacks = config["attacks"]
    summary: list[dict[str, Any]] = []
    for d in defenses:
        clean = [r["clean"][d] == r["label"] for r in records]
        summary.append(_row(d, CLEAN, None, "clean", setting, clean))
        for a in attacks:
            flags = [r["adv"][a["key"]][d] == r["label"] for r in records]
            summary.append(_row(d, a["name"], a["eps"], a["key"], setting, flags))
        for eps, keys, label in worst_case_groups(attacks):
            flags = [
                r["clean"][d] == r["label"] and all(r["adv"][k][d] == r["label"] for k in keys)
                for r in records
            ]
            summary.append(_row(d, WORST, eps, label, setting, flags, attacks=keys))
    quality = []
    for dinfo in config["defenses"]:
        d = dinfo["name"]
        psnrs = [r["quality"][d]["psnr"] for r in records]
        ssims = [r["quality"][d]["ssim"] for r in records]
        quality.append(
            {
                "defense": d,
                "n": len(records),
                "psnr": _mean(psnrs),
                "ssim": _mean(ssims),
                "reference": (
                    "clean image"
                    if dinfo.get("scale", 1) == 1
                    else "clean image upscaled bicubic to the same size"
                ),
            }
        )
    perturbation = []
    for a in attacks:
        pert = [r["perturbation"][a["key"]] for r in records]
        linf = [p["linf"] for p in pert]
        l2 = [p["l2"] for p in pert]
        undefended = [p["pred"] == r["label"] for p, r in zip(pert, records, strict=True)]
        clean_ok = [r["classifier_clean"] == r["label"] for r in records]
        perturbation.append(
            {
                "attack": a["name"],
                "eps": a["eps"],
                "key": a["key"],
                "n": len(records),
                "linf_mean": _mean(linf),
                "linf_max": max(linf) if linf else None,
                "l2_mean": _mean(l2),
                "l2_median": statistics.median(l2) if l2 else None,
                "classifier_accuracy": sum(undefended) / len(records) if records else None,
                "classifier_clean_accuracy": sum(clean_ok) / len(records) if records else None,
            }
        )
    return {"summary": summary, "quality": quality, "perturbation": perturbation}


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


def record_warnings(config: dict[str, Any], records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Warnings that follow from the records (budget violations, attacks that changed nothing)."""
    out = []
    for a in config["attacks"]:
        key, eps, norm = a["key"], a["eps"], a.get("norm")
        if eps is not None and norm in ("linf", "l2") and records:
            worst = max(r["perturbation"][key][norm] for r in records)
            if worst > eps * (1 + 1e-5) + 1e-6:
                out.append(
                    {
                        "check": "budget",
                        "message": (
                            f"attack {key}: perturbation {norm} norm up to {worst:.6g} exceeds eps {eps:.6g}"
                        ),
                    }
                )
        if records:
            changed = sum(r["perturbation"][key]["pred"] != r["classifier_clean"] for r in records)
            moved = sum(r["perturbation"][key]["linf"] > 0 for r in records)
            if changed == 0 and any(r["classifier_clean"] == r["label"] for r in records):
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
        config: everything needed to rerun (versions, classifier, defenses, attacks, data,
            seed, setting, resolution); also the experiment options when known.
        records: one dict per sample, in data order: ``id``, ``index``, ``label``,
            ``clean`` (defense -> prediction), ``adv`` (attack key -> defense -> prediction),
            ``perturbation`` (attack key -> ``linf``, ``l2``, ``pred`` of the undefended
            classifier), ``classifier_clean``, ``quality`` (defense -> ``psnr``, ``ssim``).
        summary: accuracy rows (see :func:`summarize`).
        quality: PSNR/SSIM of purified clean images per defense.
        perturbation: perturbation norms and undefended accuracy per attack configuration.
        warnings: sanity-check findings (``check``, ``message``).
        run: facts about this execution that do not affect the numbers (time, cache hits).
        examples: images for the report's grid (not saved in ``results.json``).
    """

    config: dict[str, Any]
    records: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    quality: list[dict[str, Any]]
    perturbation: list[dict[str, Any]]
    warnings: list[dict[str, str]] = field(default_factory=list)
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
    def setting(self) -> str:
        """The threat model."""
        return str(self.config["setting"])

    def columns(self) -> list[str]:
        """Summary keys in display order: ``clean``, each attack, the worst cases."""
        cols: list[str] = []
        for r in self.summary:
            if r["key"] not in cols:
                cols.append(r["key"])
        return cols

    def row(self, defense: str, key: str) -> dict[str, Any]:
        """The summary row of ``defense`` for column ``key`` (``clean``, ``fgsm@4/255``, ...).

        Raises:
            KeyError: listing the known defenses and keys.
        """
        for r in self.summary:
            if r["defense"] == defense and r["key"] == key:
                return r
        raise KeyError(
            f"no summary row for defense {defense!r}, key {key!r}; defenses: {', '.join(self.defenses)}; "
            f"keys: {', '.join(self.columns())}"
        )

    def accuracy(self, defense: str, attack: str = CLEAN, eps: float | None = None) -> float:
        """Accuracy of ``defense`` under ``attack`` at ``eps`` (``attack="none"``: clean).

        Raises:
            KeyError: no such row.
        """
        for r in self.summary:
            if r["defense"] == defense and r["attack"] == attack and _same_eps(r["eps"], eps):
                return float(r["accuracy"]) if r["accuracy"] is not None else math.nan
        raise KeyError(f"no summary row for defense {defense!r}, attack {attack!r}, eps {eps!r}")

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """The content of ``results.json`` (records are in ``samples.jsonl``)."""
        return {
            "format": RESULTS_FORMAT,
            "config": self.config,
            "summary": self.summary,
            "quality": self.quality,
            "perturbation": self.perturbation,
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
        """Read a run folder (``results.json``, ``samples.jsonl`` and the example images)."""
        from .examples import load_examples

        d = Path(out)
        data = json.loads((d / "results.json").read_text(encoding="utf-8"))
        if data.get("format") != RESULTS_FORMAT:
            raise ValueError(
                f"{d / 'results.json'}: expected format {RESULTS_FORMAT}, got {data.get('format')!r}"
            )
        run_id = data["config"].get("run_id")
        records, _ = read_jsonl(d / "samples.jsonl")
        records = sorted((r for r in records if r.get("run") == run_id), key=lambda r: r["index"])
        return cls(
            config=data["config"],
            records=records,
            summary=data["summary"],
            quality=data["quality"],
            perturbation=data["perturbation"],
            warnings=data.get("warnings", []),
            run=data.get("run", {}),
            examples=load_examples(d),
        )


def _same_eps(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= 1e-9 * max(1.0, abs(a))
