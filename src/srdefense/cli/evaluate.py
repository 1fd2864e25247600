"""``srdefense evaluate``: a thin shell over :func:`srdefense.evaluation.run_config`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from ._app import app
from ._common import console, err_console, fail, progress_bar, resolve_device


def results_table(results: Any, width: int = 120) -> Table:
    """A rich table: accuracy (%) per defense (rows) and column, with 95% intervals if they fit."""
    from ..evaluation.config import format_eps
    from ..evaluation.report import column_title

    keys = results.columns()
    name_w = max(len(d) for d in results.defenses) + 3
    with_ci = name_w + 17 * len(keys) <= width
    title = f"accuracy (%), n={len(results.records)}"
    budgets = {r["eps"] for r in results.summary if r["eps"] is not None}
    headers = [column_title(results, k).replace("worst case", "worst") for k in keys]
    if len(budgets) == 1:  # one budget: say it once in the title, keep the headers short
        (eps,) = budgets
        suffix = " " + format_eps(eps)
        title += f", eps {format_eps(eps)}"
        headers = [
            h[: -len(suffix)] + (" eps" if h.startswith("worst") else "") if h.endswith(suffix) else h
            for h in headers
        ]
        headers = ["worst all" if h == "worst" else h for h in headers]
    title += "" if with_ci else " (95% intervals: see report.md)"
    table = Table(
        title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 0, 0, 1)
    )
    table.add_column("defense", style="bold", no_wrap=True)
    for h in headers:
        table.add_column(h, justify="right", min_width=max(len(w) for w in h.split()))
    for d in results.defenses:
        cells = []
        for k in keys:
            r = results.row(d, k)
            if r["accuracy"] is None:
                cells.append("-")
            elif not with_ci:
                cells.append(f"{100 * r['accuracy']:.1f}")
            else:
                lo, hi = r["ci95"]
                cells.append(f"{100 * r['accuracy']:.1f} [dim][{100 * lo:.0f}-{100 * hi:.0f}][/]")
        table.add_row(d, *cells)
    return table


def _setup_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean a bad dataset, classifier or weight file (reported without a traceback)."""
    from .._weights import WeightsError
    from ..data.datasets import DatasetError
    from ..models.registry import ClassifierLoadError

    return (DatasetError, ClassifierLoadError, WeightsError, FileNotFoundError)


@app.command()
def evaluate(
    data: Annotated[
        str | None, typer.Option(help="'samples' (embedded photos), a folder ROOT/<wnid>/*, or FILE.csv.")
    ] = None,
    n: Annotated[
        int | None,
        typer.Option(
            "--n",
            "--num-images",
            help="Number of images (a seeded random subset). Under torchrun use --num-images: "
            "torchrun's parser takes --n for an ambiguous abbreviation of its own options.",
        ),
    ] = None,
    classifier: Annotated[
        str | None,
        typer.Option(help="Registered classifier, timm:NAME, torchvision:NAME or module.py:factory."),
    ] = None,
    classifier_weights: Annotated[
        Path | None,
        typer.Option(
            "--classifier-weights", help="Weight file for a module.py:factory/timm/torchvision model."
        ),
    ] = None,
    defense: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated defense specs (none,paper,wd:sigma=0.02,...), 'all' or 'ablations'."
        ),
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(help="Comma-separated attacks (see srdefense list attacks), e.g. fgsm,pgd,autoattack."),
    ] = None,
    eps: Annotated[
        str | None, typer.Option(help="Comma-separated Linf budgets, e.g. 2/255,4/255,8/255 or 0.01.")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file with any of these options (command-line flags win).")
    ] = None,
    setting: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated threat models: gray-box (attacks see the classifier alone), white-box "
            "(gradients through the whole defense, BPDA where a stage has none, EOT if random), bpda "
            "(identity backward through the purifier)."
        ),
    ] = None,
    adaptive_attack: Annotated[
        str | None,
        typer.Option(
            "--adaptive-attack", help="Attacks of the adaptive settings (default: the same as --attack)."
        ),
    ] = None,
    eot_samples: Annotated[
        int | None,
        typer.Option("--eot-samples", help="EOT draws per gradient for randomised defenses (default 20)."),
    ] = None,
    eval_draws: Annotated[
        int | None,
        typer.Option("--eval-draws", help="Draws when scoring a randomised defense (default 10)."),
    ] = None,
    card: Annotated[
        bool | None,
        typer.Option("--card/--no-card", help="Run the gradient-masking report card (default: on)."),
    ] = None,
    resolution: Annotated[
        str | None, typer.Option(help="purified: classify the 2x image (paper); native: resize back.")
    ] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Images per batch.")] = None,
    image_size: Annotated[
        int | None, typer.Option("--image-size", help="Input side of the images (default: the classifier's).")
    ] = None,
    max_pixels: Annotated[
        int | None,
        typer.Option(
            "--max-pixels", help="Refuse images with more pixels (W x H; default 50 MP; 0: no limit)."
        ),
    ] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every random draw.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (runs/NAME).")] = None,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Adversarial-example cache (default OUT/cache).")
    ] = None,
    resume: Annotated[
        bool | None, typer.Option("--resume/--no-resume", help="Continue an interrupted run in --out.")
    ] = None,
    quiet: Annotated[
        bool | None, typer.Option("--quiet/--no-quiet", "-q", help="Show only the table.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="DataLoader worker processes decoding images ahead (default 0: in-process)."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="Super-resolution arithmetic when scoring: fp32 (default), bf16, fp16 or auto (bf16 where "
            "the hardware has it); not fp32, results.json records its fidelity against fp32."
        ),
    ] = None,
    attack_precision: Annotated[
        str | None,
        typer.Option(
            "--attack-precision",
            help="Super-resolution arithmetic of white-box attack gradients (default fp32).",
        ),
    ] = None,
) -> None:
    """Evaluate defenses against attacks, gray-box and adaptive (white-box, BPDA, EOT).

    Writes results.json, samples.jsonl, report.md and report.html into --out. Adversarial
    examples are cached, so adding a defense never recomputes an attack; --resume continues
    an interrupted run with the same final numbers. Under torchrun every rank evaluates its
    share of the batches into samples-RANK-of-WORLD.jsonl and rank 0 merges them
    (see srdefense merge).
    """
    from ..evaluation import ConfigError, build_config, load_config_file

    flags = {
        "data": data,
        "n": n,
        "classifier": classifier,
        "classifier_weights": str(classifier_weights) if classifier_weights is not None else None,
        "defenses": defense,
        "attacks": attack,
        "eps": eps,
        "settings": setting,
        "adaptive_attacks": adaptive_attack,
        "eot_samples": eot_samples,
        "eval_draws": eval_draws,
        "card": card,
        "resolution": resolution,
        "batch_size": batch_size,
        "image_size": image_size,
        "max_pixels": max_pixels,
        "device": device,
        "seed": seed,
        "out": str(out) if out is not None else None,
        "cache_dir": str(cache_dir) if cache_dir is not None else None,
        "resume": resume,
        "quiet": quiet,
        "workers": workers,
        "precision": precision,
        "attack_precision": attack_precision,
    }
    try:
        file_values = load_config_file(config) if config is not None else {}
        cfg = build_config(file_values, flags)
    except ConfigError as exc:
        fail(str(exc))
    if not cfg.out:
        fail("--out: an output folder is required (or 'out:' in the --config file)")
    if "all" in cfg.defenses and not any(d.split(":")[0] == "quilting" for d in cfg.defenses):
        err_console.print(
            "note: 'all' leaves out quilting, which needs a patch database of clean images: "
            "add quilting:database=DIR",
            highlight=False,
        )
    run_and_show(cfg)


def run_and_show(cfg: Any) -> Any:
    """Run an :class:`~srdefense.evaluation.EvalConfig` with progress bars, then print the table.

    Shared by ``srdefense evaluate`` and ``srdefense demo``: rich progress bars on stderr
    (hidden with ``cfg.quiet``), the accuracy table on stdout, warnings on stderr. Errors in
    the configuration end the command with exit status 2 and a message, without a traceback.

    Returns:
        The :class:`~srdefense.evaluation.Results`.
    """
    from ..evaluation import ConfigError, run_config
    from ..evaluation.distributed import shard_from_env
    from ..evaluation.runner import ProgressEvent

    try:
        shard = shard_from_env()  # under torchrun only rank 0 talks
    except ConfigError as exc:
        fail(str(exc))
    leader = shard.leader
    cfg.device = str(resolve_device(cfg.device))
    with progress_bar(not cfg.quiet and leader) as prog:
        tasks: dict[str, Any] = {}

        def on_progress(ev: ProgressEvent) -> None:
            if ev.stage == "start":
                tasks["batches"] = prog.add_task("batches", total=ev.n_batches)
                tasks["steps"] = prog.add_task("attacks + defenses", total=ev.n_attacks + ev.n_defenses)
            elif ev.stage in ("attack", "defense"):
                if ev.attack:
                    what = f"attack {ev.attack}" + (" (cached)" if ev.cached else "")
                else:
                    what = f"defense {ev.defense}"
                prog.update(tasks["steps"], advance=1, description=f"batch {ev.batch + 1}: {what}")
            elif ev.stage in ("batch", "skip"):
                prog.update(tasks["batches"], advance=1)
                prog.reset(tasks["steps"])

        try:
            results = run_config(cfg, progress=on_progress)
        except ConfigError as exc:
            fail(str(exc))
        except KeyError as exc:
            fail(str(exc.args[0]) if exc.args else str(exc))
        except _setup_errors() as exc:
            # dataset, classifier and weight loading errors carry their own explanation
            fail(str(exc))
        except KeyboardInterrupt:
            hint = f"; add --resume to continue it in {cfg.out}" if cfg.out else ""
            fail(f"interrupted: the finished batches are recorded{hint}", code=130)

    if not leader:
        return results
    console.print(results_table(results, console.width))
    flagged = [c for c in results.checks if c["flag"]]
    if flagged:
        err_console.print(
            f"[red]report card:[/] {len(flagged)} flag(s) on "
            + ", ".join(sorted({c["defense"] for c in flagged}))
            + " (the attack may be too weak there; see report.md)",
            highlight=False,
        )
    if not cfg.quiet:
        for w in results.warnings:
            err_console.print(f"[yellow]warning ({w['check']}):[/] {w['message']}", highlight=False)
        for c in flagged:
            err_console.print(f"[red]flag ({c['defense']}, {c['check']}):[/] {c['message']}", highlight=False)
        if cfg.out:
            logs = "samples.jsonl" if shard.world == 1 else f"samples-RANK-of-{shard.world}.jsonl"
            console.print(f"wrote results.json, {logs}, report.md, report.html to {cfg.out}")
    return results
