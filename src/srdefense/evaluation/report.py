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

This module renders and writes the report; its parts live by concern in :mod:`.document` (the
building blocks), :mod:`.tables`, :mod:`.sections` (the built-in sections) and :mod:`.plots`, and
every name they define that this module used to define is still importable from here.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from .document import Figure, Section, Table, md_escape
from .io import atomic_write_bytes, atomic_write_text
from .plots import plot_accuracy_vs_eps, plot_examples, plot_heatmap
from .results import CLEAN, Results
from .sections import (
    DEFAULT_SECTIONS,
    build_sections,
    section_ablation,
    section_accuracy,
    section_accuracy_vs_eps,
    section_card,
    section_clean,
    section_config,
    section_examples,
    section_honest,
    section_overview,
    section_paper_comparison,
    section_perturbation,
    section_quality,
    section_restorers,
    section_warnings,
    section_worst_case,
)
from .tables import (
    SETTING_MEANINGS,
    SETTING_TITLES,
    SectionFn,
    accuracy_table,
    aggregate_columns,
    attack_columns,
    column_title,
)


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


__all__ = [  # with the names of the modules split out of this one, importable from here as before
    "CLEAN",
    "DEFAULT_SECTIONS",
    "SETTING_MEANINGS",
    "SETTING_TITLES",
    "Figure",
    "Section",
    "SectionFn",
    "Table",
    "accuracy_table",
    "aggregate_columns",
    "attack_columns",
    "build_sections",
    "column_title",
    "md_escape",
    "plot_accuracy_vs_eps",
    "plot_examples",
    "plot_heatmap",
    "render_html",
    "render_markdown",
    "section_ablation",
    "section_accuracy",
    "section_accuracy_vs_eps",
    "section_card",
    "section_clean",
    "section_config",
    "section_examples",
    "section_honest",
    "section_overview",
    "section_paper_comparison",
    "section_perturbation",
    "section_quality",
    "section_restorers",
    "section_warnings",
    "section_worst_case",
    "write_report",
]
