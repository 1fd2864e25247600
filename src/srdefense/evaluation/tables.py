"""Tables of a report: accuracy cells, column titles, the accuracy table per defense and column."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .document import Section, Table
from .eps import format_eps
from .results import ADAPTIVE, CLEAN, ROBUST, WORST, Results

SectionFn = Callable[[Results], "Section | None"]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _cell(row: dict[str, Any], ci: bool = True) -> str:
    if row["accuracy"] is None:
        return "-"
    if not ci:
        return _pct(row["accuracy"])
    lo, hi = row["ci95"]
    return f"{_pct(row['accuracy'])} [{_pct(lo)}, {_pct(hi)}]"


SETTING_TITLES = {"gray-box": "gray-box", "white-box": "white-box", "bpda": "BPDA", ADAPTIVE: "adaptive"}
SETTING_MEANINGS = {
    "gray-box": "attacks are crafted on the classifier alone, then the defense is applied "
    "(the paper's setting)",
    "white-box": "attacks differentiate the whole defended model: true gradients where a stage has one, its "
    "declared BPDA stand-in where it has none, and EOT over a randomised defense",
    "bpda": "attacks see the defense's exact forward pass but an identity backward pass through every "
    "purification stage (Athalye et al.'s BPDA), with EOT over a randomised defense",
}


def column_title(results: Results, key: str) -> str:
    """Display title of a summary column (``clean``, ``fgsm 4/255``, ``white-box worst case 4/255``).

    The setting is named only when the run had more than one.
    """
    if key == "clean":
        return "clean"
    several = len(results.settings) > 1
    for r in results.summary:
        if r["column"] == key or (r["key"] == key and r["setting"] != "clean"):
            prefix = f"{SETTING_TITLES.get(r['setting'], r['setting'])} " if several else ""
            if r["attack"] == ROBUST:
                return "robust" if r["eps"] is None else f"robust {format_eps(r['eps'])}"
            if r["attack"] == WORST:
                return prefix + ("worst case" if r["eps"] is None else f"worst case {format_eps(r['eps'])}")
            return prefix + r["key"].replace("@", " ")
    return key


def attack_columns(results: Results) -> list[str]:
    """Columns of single attack configurations (no clean, worst-case or robust column)."""
    out = []
    for r in results.summary:
        if r["attack"] not in (CLEAN, WORST, ROBUST) and r["column"] not in out:
            out.append(r["column"])
    return out


def aggregate_columns(results: Results) -> list[str]:
    """Worst-case columns of every setting, then the robust-accuracy columns."""
    out = []
    for r in results.summary:
        if r["attack"] in (WORST, ROBUST) and r["column"] not in out:
            out.append(r["column"])
    return out


# ---------------------------------------------------------------------------- tables
def accuracy_table(
    results: Results,
    keys: Sequence[str] | None = None,
    defenses: Sequence[str] | None = None,
    *,
    ci: bool = True,
    caption: str = "",
) -> Table:
    """Accuracy (%) per defense (rows) and column (``clean``, attack keys, worst cases).

    Args:
        results: the evaluation.
        keys: columns to show (default: all, in summary order).
        defenses: rows to show (default: all).
        ci: append the 95% Wilson interval to each cell.
        caption: table caption.
    """
    keys = list(keys) if keys is not None else results.columns()
    defenses = list(defenses) if defenses is not None else results.defenses
    rows, shade = [], []
    for d in defenses:
        cells, tints = [d], [None]
        for k in keys:
            r = results.row(d, k)
            cells.append(_cell(r, ci))
            tints.append(r["accuracy"])
        rows.append(cells)
        shade.append(tints)
    return Table(["defense"] + [column_title(results, k) for k in keys], rows, caption, shade)  # type: ignore[arg-type]
