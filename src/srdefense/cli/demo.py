"""``srdefense demo``: the main job on the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from ._app import app
from ._common import console


def per_image_table(results: Any, defense: str = "paper", reference: str = "bicubic") -> Table:
    """Each image's true label, its prediction without and with ``defense``, and image quality.

    PSNR compares the purified image with the clean image upscaled bicubically to the same size
    (the reference of :func:`srdefense.evaluation.evaluate`).
    """
    from ..models.imagenet import imagenet_classes

    names = imagenet_classes()

    def name(i: int) -> str:
        return names[i] if 0 <= i < len(names) else str(i)

    t = Table(
        title=f"Embedded samples: without defense and with '{defense}' (clean images)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 0, 0, 1),
    )
    # sample ids are identifiers: never wrapped nor cut; the other columns wrap (fold), never cut
    id_width = max([len("sample")] + [len(str(r.id)) for r in results.records])
    t.add_column("sample", no_wrap=True, min_width=id_width, overflow="ignore")
    for col in ("true label", "no defense", defense, f"PSNR vs {reference} x2 (dB)"):
        t.add_column(col, justify="right" if col.startswith("PSNR") else "left", overflow="fold")
    for r in sorted(results.records, key=lambda r: r.index):
        label, plain, defended = r.label, r.clean["none"][0], r.clean[defense][0]
        ps = r.quality[defense].psnr
        t.add_row(
            r.id,
            name(label),
            ("[green]" if plain == label else "[red]") + name(plain),
            ("[green]" if defended == label else "[red]") + name(defended),
            "-" if ps is None else f"{ps:.2f}",
        )
    return t


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Output folder (results.json, report.html, ...).")] = Path(
        "runs/demo"
    ),
    n: Annotated[int | None, typer.Option(help="Use only the first N embedded photos.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted demo in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the tables.")] = False,
) -> None:
    """Run the main job on the embedded default, on this machine's CPU in minutes.

    EfficientNet-Lite0 (ImageNet, pretrained) classifies the 20 embedded ImageNet validation
    photos; the paper's attacks but C&W (FGSM, I-FGSM, MI-FGSM at Linf 4/255, DeepFool) are
    crafted on the classifier alone (gray-box, as in the paper), white-box PGD-5 through each
    defense (the adaptive column), and every fast registered defense, the paper's wavelet
    denoising + super-resolution among them, purifies the clean and the adversarial images.
    Prints a per-image table and the accuracy table, and writes results.json, samples.jsonl,
    report.md and report.html to --out.
    """
    from ..evaluation import demo_config
    from .evaluate import run_and_show

    cfg = demo_config(out=str(out), device=device, n=n)
    cfg.resume = resume
    cfg.quiet = quiet
    results = run_and_show(cfg)
    console.print(per_image_table(results))
