"""The typer application shared by the command modules."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="srdefense",
    help="Super-resolution purification against adversarial examples: purify, classify, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
