"""``srdefense merge``: rebuild ``results.json`` and the reports from a run's shards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app
from ._common import console, fail


@app.command()
def merge(
    run: Annotated[Path, typer.Argument(help="Run folder (the --out of srdefense evaluate).")],
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Also write report.md and report.html.")
    ] = True,
) -> None:
    """Merge the record files of a run (samples.jsonl, samples-RANK-of-WORLD.jsonl) into results.json.

    Checks that every shard belongs to the run, keeps each sample once, and names a missing or
    incomplete shard (continue such a run with srdefense evaluate --resume). results.json is
    written atomically; rank 0 of a torchrun evaluation does the same at its end.
    """
    from ..evaluation import ConfigError
    from ..evaluation.merge import merge_run
    from .evaluate import results_table

    try:
        results = merge_run(run, report=report)
    except ConfigError as exc:
        fail(str(exc))
    console.print(results_table(results, console.width))
    console.print(f"merged {len(results.records)} samples into {run / 'results.json'}")
