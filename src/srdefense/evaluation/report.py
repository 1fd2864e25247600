"""Reports of an evaluation: ``report.md`` and a self-contained ``report.html``.

A report is a list of :class:`Section` objects, each made by a function ``f(results) ->
Section | None`` (``None``: nothing to show). :data:`DEFAULT_SECTIONS` lists the built-in ones;
later work adds its own (a comparison table in the layout of the paper, an ablation section)
by passing ``extra_sections`` to :func:`write_report`, without touching this module::

    def paper_table(results: Results) -> Section:
        return Section("Comparison with the paper", tables=[accuracy_table(results, keys=[...])])

    write_report(results, out, extra_sections=[paper_table])

Plots are made with matplotlib's Agg canvas (no pyplot, no global state) and embedded in the
HTML as base64 PNG; the Markdown report links the same PNG files under ``figures/``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._eps import format_eps
from .fidelity import section_precision
from .io import atomic_write_bytes, atomic_write_text
from .metrics import PSNR_MAX_DB
from .results import ADAPTIVE, CLEAN, ROBUST, WORST, Results


# ---------------------------------------------------------------------------- building blocks
@dataclass
class Table:
    """A table rendered to Markdown and HTML.

    Attributes:
        headers: column titles.
        rows: cell texts (plain text; escaped when rendered).
        caption: optional caption.
        shade: optional per-cell values in [0, 1] (``None`` for no shading) that tint the HTML
            cells, e.g. accuracies.
        text_columns: indices of columns holding text (left-aligned, wrapped); the others are
            numbers (right-aligned). The first column is always a left-aligned row header.
    """

    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    shade: list[list[float | None]] | None = None
    text_columns: tuple[int, ...] = ()

    def markdown(self) -> str:
        """GitHub-flavoured Markdown."""

        def esc(s: str) -> str:
            return md_escape(s).replace("|", "\\|").replace("\n", " ")

        lines = []
        if self.caption:
            lines += [f"*{esc(self.caption)}*", ""]
        lines.append("| " + " | ".join(esc(h) for h in self.headers) + " |")
        aligns = ["---" if j == 0 or j in self.text_columns else "---:" for j in range(len(self.headers))]
        lines.append("|" + "|".join(aligns) + "|")
        for r in self.rows:
            lines.append("| " + " | ".join(esc(c) for c in r) + " |")
        return "\n".join(lines)

    def html(self) -> str:
        """An HTML ``<table>``."""
        parts = ['<table class="data">']
        if self.caption:
            parts.append(f"<caption>{html.escape(self.caption)}</caption>")
        parts.append(
            "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.headers) + "</tr></thead>"
        )
        parts.append("<tbody>")
        for i, r in enumerate(self.rows):
            cells = []
            for j, c in enumerate(r):
                tag = "th" if j == 0 else "td"
                cls = ' class="text"' if j in self.text_columns else ""
                style = ""
                if self.shade is not None and j < len(self.shade[i]) and self.shade[i][j] is not None:
                    style = f' style="background:{_shade_color(float(self.shade[i][j]))}"'  # type: ignore[arg-type]
                cells.append(f"<{tag}{cls}{style}>{html.escape(c)}</{tag}>")
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table>")
        return "".join(parts)


def md_escape(text: str) -> str:
    """Text for Markdown: HTML markup is escaped (a hostile file name renders as text, never as HTML)."""
    return html.escape(str(text), quote=False)


def _shade_color(v: float) -> str:
    # red (0) -> yellow (0.5) -> green (1), light tints so the text stays readable
    v = min(1.0, max(0.0, v))
    if v < 0.5:
        r, g = 255, int(200 + 110 * v)
    else:
        r, g = int(255 - 190 * (v - 0.5)), 255
    return f"rgb({r},{min(g, 255)},200)"


@dataclass
class Figure:
    """A PNG figure.

    Attributes:
        name: file stem (``figures/<name>.png`` next to ``report.md``).
        png: the PNG bytes.
        caption: text under the figure.
        alt: alternative text.
    """

    name: str
    png: bytes
    caption: str = ""
    alt: str = ""


@dataclass
class Section:
    """One section of a report.

    Attributes:
        title: heading.
        text: paragraphs (plain text).
        tables: tables, shown after the text.
        figures: figures, shown after the tables.
        anchor: HTML id (default: from the title).
    """

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    anchor: str = ""

    def __post_init__(self) -> None:
        if not self.anchor:
            self.anchor = re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-") or "section"


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


def section_overview(results: Results) -> Section:
    """What was evaluated, how, and on what."""
    c = results.config
    clf = c["classifier"]
    attacks = ", ".join(a["key"] for a in c["attacks"])
    n = len(results.records)
    text = [
        f"Setting {SETTING_TITLES.get(st, st)}: {SETTING_MEANINGS.get(st, st)}." for st in results.settings
    ]
    text += [
        f"Classifier: {clf['name']}. Samples: {n}. Seed: {c['seed']}. Resolution policy: "
        + (
            "the purifier's output is classified as is (the 2x image for super-resolution, as in the paper)."
            if c["resolution"] == "purified"
            else "the purifier's output is resized back to the input size before classification."
        ),
        f"Defenses: {', '.join(results.defenses)}. Attacks: {attacks}.",
        "Accuracies are percentages with 95% Wilson intervals. The worst case counts a sample as robust "
        "only if it is classified correctly clean and under every attack of the group (per-sample flags, "
        "as in AutoAttack).",
    ]
    randomized = [d["name"] for d in c["defenses"] if d.get("randomized")]
    if randomized:
        d0 = next(d for d in c["defenses"] if d.get("randomized"))
        text.append(
            f"Randomised defenses ({', '.join(randomized)}): attacked with EOT over {d0.get('eot_samples')} "
            f"draws per gradient in the adaptive settings, and scored in {d0.get('eval_draws')} independent "
            "draws; a sample counts as correct only if it is correct in every draw."
        )
    if results.warnings:
        text.append(f"{len(results.warnings)} sanity-check warning(s): see the Warnings section.")
    return Section("Overview", text=text)


def section_accuracy(results: Results) -> Section:
    """Accuracy table per defense x attack, with the heatmap."""
    figs = []
    png = plot_heatmap(results)
    if png is not None:
        figs.append(Figure("heatmap", png, "Accuracy (%) per defense and attack.", "accuracy heatmap"))
    return Section(
        "Accuracy per defense and attack",
        text=["Rows: defenses; columns: clean images, each attack configuration, and the worst cases."],
        tables=[accuracy_table(results)],
        figures=figs,
    )


def section_clean(results: Results) -> Section:
    """Clean accuracy per defense."""
    rows = []
    shade = []
    for d in results.defenses:
        r = results.row(d, "clean")
        lo, hi = r["ci95"]
        rows.append([d, str(r["n"]), _pct(r["accuracy"]), f"[{_pct(lo)}, {_pct(hi)}]"])
        shade.append([None, None, r["accuracy"], None])
    return Section(
        "Clean accuracy",
        text=["Accuracy of the classifier behind each defense on the unperturbed images."],
        tables=[Table(["defense", "n", "accuracy (%)", "95% CI"], rows, shade=shade)],  # type: ignore[arg-type]
    )


def section_worst_case(results: Results) -> Section | None:
    """Worst case over attacks per defense and setting, and robust accuracy over every setting."""
    keys = aggregate_columns(results)
    if not keys:
        return None
    return Section(
        "Worst case over attacks",
        text=[
            "A sample is robust only if it is classified correctly clean and under every attack of the "
            "group. 'worst case 4/255' groups the attacks of one setting with that budget; 'worst case' "
            "groups all of them, minimal-norm attacks (DeepFool, C&W: no budget) included. 'robust' "
            "counts a sample only if it survives every attack in every setting that was run "
            "(AutoAttack's rule).",
            "A randomised defense is scored in several independent draws; a sample counts as correct only "
            "if it is correct in all of them (the mean over draws is in results.json, accuracy_mean).",
        ],
        tables=[accuracy_table(results, keys=keys)],
    )


def _worst_column(results: Results, setting: str, eps: float | None) -> str | None:
    for r in results.summary:
        if r["setting"] == setting and r["attack"] == WORST and _eq(r["eps"], eps):
            return str(r["column"])
    return None


def _eq(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 1e-12)


def section_honest(results: Results) -> Section | None:
    """The paper's layout with the honest columns beside it: gray-box, white-box, BPDA, robust."""
    budgets = sorted({r["eps"] for r in results.summary if r["attack"] == ROBUST and r["eps"] is not None})
    groups: list[float | None] = list(budgets) or [None]
    tables = []
    for eps in groups:
        cols: list[tuple[str, str | None]] = [("clean", "clean")]
        for s in ("gray-box", "white-box", "bpda"):
            title = f"{SETTING_TITLES[s]} worst case"
            cols.append((title, _worst_column(results, s, eps) if s in results.settings else None))
        robust = next(
            (r["column"] for r in results.summary if r["attack"] == ROBUST and _eq(r["eps"], eps)), None
        )
        cols.append(("robust accuracy", robust))
        rows, shade = [], []
        for d in results.defenses:
            cells, tints = [d], [None]
            for _, col in cols:
                if col is None:
                    cells.append("not run")
                    tints.append(None)
                else:
                    r = results.row(d, col)
                    cells.append(_cell(r, ci=False))
                    tints.append(r["accuracy"])
            rows.append(cells)
            shade.append(tints)
        cap = "all attacks" if eps is None else f"eps {format_eps(eps)}"
        tables.append(Table(["defense"] + [c for c, _ in cols], rows, cap, shade))  # type: ignore[arg-type]
    text = [
        "Rows are defenses, as in the paper's tables; the columns add what an attacker who knows the "
        "defense achieves. Accuracy (%) of the worst case over the attacks of each setting, and robust "
        "accuracy: correct clean and under every attack of every setting that was run.",
    ]
    text += [
        f"{SETTING_TITLES[s]}: {SETTING_MEANINGS[s]}." for s in results.settings if s in SETTING_MEANINGS
    ]
    return Section("Gray-box against adaptive attacks", text=text, tables=tables)


def section_card(results: Results) -> Section | None:
    """The gradient-masking report card."""
    if not results.checks:
        return None
    rows = []
    shade = []
    for c in results.checks:
        rows.append([c["defense"], c["check"], c["status"], c["message"], c.get("advice", "")])
        tint = {"flag": 0.0, "ok": 1.0}.get(c["status"])
        shade.append([None, None, tint, None, None])
    flagged = sorted({c["defense"] for c in results.checks if c["flag"]})
    text = [
        "Signs that an attack may have been too weak (after Athalye et al. 2018, Carlini et al. 2019 and "
        "AutoAttack's checks): a flag means the number above it may overstate robustness.",
        ("Flagged: " + ", ".join(flagged) + ".") if flagged else "No check raised a flag.",
    ]
    table = Table(
        ["defense", "check", "status", "finding", "what to try next"], rows, shade=shade, text_columns=(3, 4)
    )  # type: ignore[arg-type]
    return Section("Report card: gradient masking", text=text, tables=[table])


def section_accuracy_vs_eps(results: Results) -> Section | None:
    """Accuracy against eps per defense, one panel per attack."""
    png = plot_accuracy_vs_eps(results)
    if png is None:
        return None
    return Section(
        "Accuracy against the perturbation budget",
        text=["eps = 0 is the clean accuracy. One panel per attack, one line per defense."],
        figures=[Figure("accuracy_vs_eps", png, "Accuracy (%) against eps.", "accuracy against eps")],
    )


def section_quality(results: Results) -> Section:
    """PSNR and SSIM of purified clean images."""
    rows = []
    for q in results.quality:
        p = q["psnr"]
        ptxt = "-" if p is None else ("inf (identical)" if p >= PSNR_MAX_DB - 1e-9 else f"{p:.2f}")
        s = q["ssim"]
        rows.append([q["defense"], ptxt, "-" if s is None else f"{s:.4f}", q["reference"]])
    return Section(
        "Image quality of purified clean images",
        text=[
            "PSNR (dB) and SSIM (Gaussian window 11, sigma 1.5, as scikit-image) of each defense's "
            "output on clean images. When a defense changes the size (super-resolution x2) the "
            "reference is the clean image upscaled bicubically to the same size."
        ],
        tables=[Table(["defense", "PSNR (dB)", "SSIM", "reference"], rows, text_columns=(3,))],
    )


def section_perturbation(results: Results) -> Section:
    """Perturbation sizes and the undefended classifier's accuracy per attack."""
    rows = []
    for p in results.perturbation:
        label = p["key"] if len(results.settings) == 1 else f"{p.get('setting', '')} {p['key']}"
        if p.get("defense"):
            label += f" ({p['defense']})"
        rows.append(
            [
                label,
                format_eps(p["eps"]),
                "-" if p["linf_mean"] is None else f"{255 * p['linf_mean']:.2f}",
                "-" if p["linf_max"] is None else f"{255 * p['linf_max']:.2f}",
                "-" if p["l2_median"] is None else f"{p['l2_median']:.3f}",
                _pct(p["classifier_accuracy"]),
            ]
        )
    return Section(
        "Perturbations",
        text=[
            "Linf in 1/255 units, L2 in [0, 1] pixel units; accuracy of the undefended classifier on the "
            "adversarial images (in the adaptive settings, one row per defense the examples were made for)."
        ],
        tables=[
            Table(
                ["attack", "eps", "mean Linf (x255)", "max Linf (x255)", "median L2", "undefended acc. (%)"],
                rows,
            )
        ],
    )


def section_examples(results: Results) -> Section | None:
    """Grid of example images with their predictions."""
    png = plot_examples(results)
    if png is None:
        return None
    attack = results.examples[0]["attack"]
    return Section(
        "Examples",
        text=[
            f"Clean image, adversarial image ({attack}) and each defense's output on the adversarial "
            "image, with the predicted class (green: correct, red: wrong)."
        ],
        figures=[Figure("examples", png, "Clean / adversarial / purified.", "example images")],
    )


def section_warnings(results: Results) -> Section:
    """Sanity-check warnings."""
    if not results.warnings:
        return Section("Warnings", text=["No sanity check raised a warning."])
    rows = [[w["check"], w["message"]] for w in results.warnings]
    return Section("Warnings", tables=[Table(["check", "message"], rows, text_columns=(1,))])


def section_config(results: Results) -> Section:
    """The configuration block, to rerun the evaluation."""
    c = results.config
    v = c.get("versions", {})
    rows = [[k, str(val)] for k, val in v.items()]
    rows += [["run id", str(c.get("run_id"))], ["device", str(c.get("device"))]]
    clf = c["classifier"]
    rows += [["classifier parameters sha256", str(clf.get("params_sha256"))]]
    if clf.get("weights_sha256"):
        rows += [["classifier weights sha256", str(clf["weights_sha256"])]]
    rows += [[f"defense {d['name']}", d["repr"]] for d in c["defenses"]]
    for d in c["defenses"]:
        fp = d.get("fingerprint") or {}
        for h in fp.get("weights_sha256", []):
            rows.append([f"defense {d['name']} weights sha256", h])
    rows += [[f"attack {a['key']}", json.dumps(a["config"], sort_keys=True)] for a in c["attacks"]]
    return Section(
        "Configuration",
        text=["Everything needed to rerun is in results.json (config)."],
        tables=[Table(["item", "value"], rows, text_columns=(1,))],
    )


def _comparison_sections() -> tuple[SectionFn, SectionFn]:
    from .comparison import section_ablation, section_paper_comparison

    return section_paper_comparison, section_ablation


def section_paper_comparison(results: Results) -> Section | None:
    """See :func:`srdefense.evaluation.comparison.section_paper_comparison`."""
    return _comparison_sections()[0](results)


def section_ablation(results: Results) -> Section | None:
    """See :func:`srdefense.evaluation.comparison.section_ablation`."""
    return _comparison_sections()[1](results)


def section_restorers(results: Results) -> Section | None:
    """See :func:`srdefense.evaluation.restorers.section_restorers`."""
    from .restorers import section_restorers as restorers

    return restorers(results)


DEFAULT_SECTIONS: tuple[SectionFn, ...] = (
    section_overview,
    section_accuracy,
    section_honest,
    section_card,
    section_paper_comparison,
    section_ablation,
    section_restorers,
    section_clean,
    section_worst_case,
    section_accuracy_vs_eps,
    section_quality,
    section_precision,
    section_perturbation,
    section_examples,
    section_warnings,
    section_config,
)
"""The built-in sections, in order."""


# ---------------------------------------------------------------------------- plots
def _canvas(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def plot_heatmap(results: Results) -> bytes | None:
    """Heatmap of accuracy (%) per defense (rows) and column (clean, attacks, worst cases)."""
    import numpy as np

    keys = results.columns()
    defs = results.defenses
    if not keys or not defs:
        return None
    m = np.array(
        [
            [
                np.nan if results.row(d, k)["accuracy"] is None else 100 * results.row(d, k)["accuracy"]
                for k in keys
            ]
            for d in defs
        ]
    )
    fig = _canvas(1.2 + 0.95 * len(keys), 1.0 + 0.45 * len(defs))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(m, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(keys)), [column_title(results, k) for k in keys], rotation=35, ha="right")
    ax.set_yticks(range(len(defs)), defs)
    for i in range(len(defs)):
        for j in range(len(keys)):
            if not np.isnan(m[i, j]):
                color = "white" if m[i, j] < 20 or m[i, j] > 85 else "black"
                ax.text(j, i, f"{m[i, j]:.0f}", ha="center", va="center", fontsize=9, color=color)
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    ax.set_title(f"accuracy, {results.setting}")
    return _png(fig)


def plot_accuracy_vs_eps(results: Results) -> bytes | None:
    """Accuracy (%) against eps (x 255), one panel per bounded attack, one line per defense."""
    by_name: dict[str, list[dict[str, Any]]] = {}
    several = len(results.settings) > 1
    for r in results.summary:
        if r["attack"] in (CLEAN, WORST, ROBUST) or r["eps"] is None or r["defense"] != results.defenses[0]:
            continue
        panel = f"{r['setting']} {r['attack']}" if several else r["attack"]
        by_name.setdefault(panel, []).append({"eps": r["eps"], "key": r["column"]})
    if not by_name:
        return None
    names = list(by_name)
    ncols = min(3, len(names))
    nrows = (len(names) + ncols - 1) // ncols
    fig = _canvas(4.2 * ncols, 3.2 * nrows)
    for idx, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, idx + 1)
        confs = sorted(by_name[name], key=lambda a: a["eps"])
        for d in results.defenses:
            xs = [0.0] + [255 * a["eps"] for a in confs]
            ys = [100 * (results.row(d, "clean")["accuracy"] or 0.0)]
            ys += [100 * (results.row(d, a["key"])["accuracy"] or 0.0) for a in confs]
            ax.plot(xs, ys, marker="o", label=d)
        ax.set_title(name)
        ax.set_xlabel("eps (x 1/255)")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(-3, 103)
        ax.grid(alpha=0.3)
        if idx == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _short(s: str, n: int = 22) -> str:
    s = s.split(",")[0]
    return s if len(s) <= n else s[: n - 1] + "…"


def plot_examples(results: Results, max_defenses: int = 6) -> bytes | None:
    """Grid: one row per example; clean, adversarial, then each defense's purified output."""
    exs = results.examples
    if not exs:
        return None
    defs = [d for d in results.defenses if d in exs[0]["purified"]][:max_defenses]
    ncols = 2 + len(defs)
    fig = _canvas(2.1 * ncols, 2.45 * len(exs))
    for i, ex in enumerate(exs):
        label = ex["label"]
        panels = [
            ("clean", ex["clean"], ex["clean_pred"], ex["clean_pred_name"]),
            ("adversarial", ex["adversarial"], ex["adversarial_pred"], ex["adversarial_pred_name"]),
        ]
        panels += [(d, ex["purified"][d], ex["purified_pred"][d], ex["purified_pred_name"][d]) for d in defs]
        for j, (title, img, pred, pname) in enumerate(panels):
            ax = fig.add_subplot(len(exs), ncols, i * ncols + j + 1)
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            color = "#137333" if pred == label else "#c5221f"
            ax.set_title(f"{_short(title, 16)}\n{_short(pname)}", fontsize=9, color=color)
            if j == 0:
                ax.set_ylabel(f"true: {_short(ex['label_name'])}", fontsize=9)
    fig.tight_layout()
    return _png(fig)


# ---------------------------------------------------------------------------- rendering
def build_sections(
    results: Results,
    sections: Sequence[SectionFn] | None = None,
    extra_sections: Sequence[SectionFn] = (),
) -> list[Section]:
    """Run the section functions (default :data:`DEFAULT_SECTIONS`, then ``extra_sections``)."""
    out = []
    for fn in list(sections if sections is not None else DEFAULT_SECTIONS) + list(extra_sections):
        s = fn(results)
        if s is not None:
            out.append(s)
    return out


def render_markdown(results: Results, sections: Sequence[Section], figure_dir: str = "figures") -> str:
    """The Markdown report; figures are linked as ``figure_dir/<name>.png``."""
    title = md_escape(f"srdefense evaluation: {results.config['classifier']['name']}, {results.setting}")
    lines = [f"# {title}", ""]
    for s in sections:
        lines += [f"## {md_escape(s.title)}", ""]
        for t in s.text:
            lines += [md_escape(t), ""]
        for tab in s.tables:
            lines += [tab.markdown(), ""]
        for f in s.figures:
            lines += [f"![{md_escape(f.alt or f.caption)}]({figure_dir}/{f.name}.png)", ""]
            if f.caption:
                lines += [f"*{md_escape(f.caption)}*", ""]
    return "\n".join(lines).rstrip() + "\n"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:0;color:#1f2328;background:#fff}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px}
h1{font-size:1.6em;margin:0.2em 0 0.6em}
h2{font-size:1.25em;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:1.8em}
p{line-height:1.5;margin:0.5em 0}
nav{font-size:0.9em;margin-bottom:1em}nav a{margin-right:12px;color:#0969da;text-decoration:none}
table.data{border-collapse:collapse;margin:12px 0;font-size:0.88em;font-variant-numeric:tabular-nums}
table.data caption{text-align:left;font-style:italic;padding-bottom:4px}
table.data th,table.data td{border:1px solid #d0d7de;padding:4px 8px;text-align:right;white-space:nowrap}
table.data thead th{background:#f6f8fa;text-align:center}
table.data tbody th{text-align:left;background:#f6f8fa;font-weight:600}
table.data td.text{text-align:left;white-space:normal;overflow-wrap:anywhere;max-width:760px;
 font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:0.92em}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{font-size:0.85em;color:#57606a}
.meta{color:#57606a;font-size:0.9em}
"""

_SCRIPT = """
(function(){
  var root=document.documentElement;
  window.addEventListener('error',function(e){
    root.setAttribute('data-js-errors',String((parseInt(root.getAttribute('data-js-errors')||'0'))+1));
  });
  function check(){
    var imgs=Array.prototype.slice.call(document.images);
    var ok=imgs.every(function(i){return i.complete&&i.naturalWidth>0;});
    root.setAttribute('data-images',String(imgs.length));
    root.setAttribute('data-images-ok',ok?'true':'false');
  }
  window.addEventListener('load',check);
})();
"""


def render_html(results: Results, sections: Sequence[Section]) -> str:
    """A self-contained HTML page (inline CSS, base64 PNG figures, no external resources).

    The page sets ``data-images-ok="true"`` on ``<html>`` once every image is decoded, and
    counts script errors in ``data-js-errors`` (used by the browser test).
    """
    title = f"srdefense evaluation: {results.config['classifier']['name']}, {results.setting}"
    nav = "".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = [f"<h1>{html.escape(title)}</h1>"]
    created = html.escape(str(results.run.get("created", "")))
    run_id = html.escape(str(results.config.get("run_id")))
    body.append(f'<p class="meta">{len(results.records)} samples · run {run_id} · {created}</p>')
    body.append(f"<nav>{nav}</nav>")
    for s in sections:
        body.append(f'<section id="{html.escape(s.anchor)}"><h2>{html.escape(s.title)}</h2>')
        body += [f"<p>{html.escape(t)}</p>" for t in s.text]
        body += [t.html() for t in s.tables]
        for f in s.figures:
            b64 = base64.b64encode(f.png).decode("ascii")
            body.append(
                f'<figure><img alt="{html.escape(f.alt or f.caption)}" src="data:image/png;base64,{b64}">'
                f"<figcaption>{html.escape(f.caption)}</figcaption></figure>"
            )
        body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style><script>{_SCRIPT}</script></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_report(
    results: Results,
    out: str | Path,
    *,
    sections: Sequence[SectionFn] | None = None,
    extra_sections: Sequence[SectionFn] = (),
) -> dict[str, Path]:
    """Write ``report.md`` (with ``figures/*.png``) and ``report.html`` into ``out`` atomically.

    Args:
        results: the evaluation.
        out: the folder.
        sections: section functions replacing :data:`DEFAULT_SECTIONS`.
        extra_sections: section functions appended after them (paper table, ablations).

    Returns:
        Paths of ``markdown`` and ``html``.
    """
    d = Path(out)
    secs = build_sections(results, sections, extra_sections)
    for s in secs:
        for f in s.figures:
            atomic_write_bytes(d / "figures" / f"{f.name}.png", f.png)
    md, page = d / "report.md", d / "report.html"
    atomic_write_text(md, render_markdown(results, secs))
    atomic_write_text(page, render_html(results, secs))
    return {"markdown": md, "html": page}


__all__ = [
    "CLEAN",
    "DEFAULT_SECTIONS",
    "Figure",
    "Section",
    "SectionFn",
    "Table",
    "accuracy_table",
    "build_sections",
    "column_title",
    "plot_accuracy_vs_eps",
    "plot_examples",
    "plot_heatmap",
    "render_html",
    "render_markdown",
    "write_report",
]
