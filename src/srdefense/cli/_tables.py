"""Terminal tables that never cut or wrap what a user has to type.

rich shrinks a table that is wider than the terminal by wrapping its columns down to their
longest word and then, if that is still too wide, by cutting cells with an ellipsis. Cutting a
name (``pixel-deflect…``) makes the table useless, so the tables here are fitted before rich
has to cut anything:

1. identifier columns (names, sizes, norms) never wrap (``no_wrap``) and are as wide as their
   longest cell; prose columns wrap at spaces only, never inside a word;
2. when the table's narrowest layout is still wider than the console, optional columns (long
   references, sources) are dropped, last first, then the borders are made compact;
3. if even that does not fit, each row is printed as a record instead: its identifiers on one
   line, its prose below, wrapped at spaces.

rich has no "never cut this column" setting (its ``overflow`` options all cut or fold), hence
this small fitting step; measuring is rich's own (``Measurement``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.padding import Padding
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    """A column of a fitted table.

    Attributes:
        header: the column title.
        key: an identifier column (never wrapped nor cut).
        optional: may be dropped when the console is too narrow.
        justify: ``"left"`` or ``"right"``.
    """

    header: str
    key: bool = False
    optional: bool = False
    justify: Literal["left", "right"] = "left"


def _build(
    title: str | None,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    keep: Sequence[int],
    compact: bool,
) -> Table:
    table = Table(
        title=title or None,
        box=box.SIMPLE_HEAD if compact else box.HEAVY_HEAD,
        padding=(0, 1),
        collapse_padding=compact,
        show_edge=not compact,
    )
    for i in keep:
        col = columns[i]
        if col.key:
            width = max([len(col.header)] + [len(r[i]) for r in rows])
            table.add_column(
                col.header, no_wrap=True, min_width=width, overflow="ignore", justify=col.justify
            )
        else:
            table.add_column(col.header, overflow="fold", justify=col.justify)
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return table


def print_table(
    console: Console, title: str | None, columns: Sequence[Column], rows: Sequence[Sequence[str]]
) -> None:
    """Print a table on ``console`` so that no cell is cut (see the module docstring).

    Args:
        console: where to print (its width decides the layout).
        title: the table title, or ``None``.
        columns: the columns, in order.
        rows: the cells, one string per column.
    """
    avail = console.width
    keep = list(range(len(columns)))
    optional = [i for i, c in enumerate(columns) if c.optional]
    for compact in (False, True):
        while True:
            table = _build(title, columns, rows, keep, compact=compact)
            # measured without a width limit: rich clamps a measurement to the width it is given
            need = Measurement.get(console, console.options.update_width(1 << 20), table).minimum
            if need <= avail:
                console.print(table)
                return
            if not optional or compact:
                break
            keep.remove(optional.pop())
    keys = [i for i in keep if columns[i].key]
    prose = [i for i in keep if not columns[i].key]
    widths = {i: max([len(columns[i].header)] + [len(r[i]) for r in rows]) for i in keys}
    if title:
        console.print(Text(title, style="italic"), overflow="fold")
    header = "  ".join(columns[i].header.ljust(widths[i]) for i in keys)
    console.print(Text(header.rstrip(), style="bold"), overflow="fold")
    for r in rows:
        console.print(Text("  ".join(r[i].ljust(widths[i]) for i in keys).rstrip()), overflow="fold")
        for i in prose:
            console.print(Padding(Text(r[i]), (0, 0, 0, 4)))
