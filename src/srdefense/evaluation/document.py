"""The report's building blocks: :class:`Table`, :class:`Figure` and :class:`Section`.

A leaf module (nothing from srdefense): the modules that make report sections
(:mod:`.sections`, :mod:`.comparison`, :mod:`.restorers`) build these, :mod:`.report` renders them.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field


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
