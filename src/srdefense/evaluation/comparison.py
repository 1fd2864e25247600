"""The paper's comparison and the ablations of its pipeline, as named groups and report sections.

``--defense ablations`` expands to :data:`ABLATIONS`; the report shows the competing defenses in
the layout of the paper's tables (rows: defenses; columns: attacks) and the ablations apart.
"""

from __future__ import annotations

from ..purification.presets import ABLATIONS, PAPER_ORDER
from .document import Section, Table
from .results import Results
from .tables import _pct, attack_columns, column_title


def _attack_keys(results: Results) -> list[str]:
    return attack_columns(results)


def _table(results: Results, defenses: list[str], notes: dict[str, str] | None, caption: str) -> Table:
    keys = ["clean", *_attack_keys(results)]
    headers = (
        ["defense"] + ([] if notes is None else ["what changes"]) + [column_title(results, k) for k in keys]
    )
    rows, shade = [], []
    for d in defenses:
        cells: list[str] = [d] + ([] if notes is None else [notes.get(d, "")])
        tints: list[float | None] = [None] * len(cells)
        for k in keys:
            acc = results.row(d, k)["accuracy"]
            cells.append(_pct(acc))
            tints.append(acc)
        rows.append(cells)
        shade.append(tints)
    text_cols = () if notes is None else (1,)
    return Table(headers, rows, caption, shade, text_columns=text_cols)


def section_paper_comparison(results: Results) -> Section | None:
    """Competing defenses in the row order of the paper's tables, attacks as columns."""
    present = [d for d in PAPER_ORDER if d in results.defenses]
    others = [d for d in results.defenses if d not in PAPER_ORDER and d not in ABLATIONS and ":" not in d]
    rows = present + others
    if len(rows) < 2:
        return None
    return Section(
        "Comparison with competing defenses (layout of the paper)",
        text=[
            "Accuracy (%) as in the paper's tables: rows are defenses, in the paper's order (no defense, "
            "the input transformations it was compared with, then super-resolution); columns are the "
            f"clean images and each attack. Setting: {results.setting}. Intervals are in the "
            "accuracy table above."
        ],
        tables=[_table(results, rows, None, "")],
    )


def section_ablation(results: Results) -> Section | None:
    """The pipeline taken apart: which stage does the work."""
    rows = [d for d in ABLATIONS if d in results.defenses]
    rows += [d for d in results.defenses if ":" in d and d not in rows]
    if len(rows) < 2:
        return None
    return Section(
        "Ablation of the pipeline",
        text=[
            "Each row changes one thing of the paper's pipeline (run them all with --defense ablations). "
            "Compare each row with 'paper' to see which stage does the work."
        ],
        tables=[_table(results, rows, ABLATIONS, "")],
    )
