"""``srdefense purify``, ``classify`` and ``list``: thin shells over the library."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.table import Table

from ._app import app
from ._common import console, err_console, fail, print_json, progress_bar, resolve_device

PRECISION_HELP = (
    "Super-resolution arithmetic: fp32, bf16, fp16 or auto (bf16 where the CPU has AVX512-BF16/AMX "
    "or on CUDA, else fp32)."
)


def build_defense(
    spec: str,
    sr: str | None,
    sr_weights: Path | None,
    tile_size: int | None,
    denoiser: str | None = None,
    denoiser_weights: Path | None = None,
    precision: str = "fp32",
) -> Any:
    """Create a defense from ``--defense`` and the SR / denoiser options, with CLI-grade errors."""
    if denoiser_weights is not None and denoiser is None:
        denoiser = "spandrel"  # --denoiser-weights alone: the learned denoiser replaces wavelet
    from ..purification.registry import DEFENSES, create_defense, parse_defense_spec

    try:
        name, _ = parse_defense_spec(spec)
        info = DEFENSES.get(name) if name in DEFENSES else None
        overrides: dict[str, Any] = {}
        if info is not None:
            accepted = inspect.signature(info.factory).parameters
            wanted = {"sr_model": sr, "sr_weights": str(sr_weights) if sr_weights else None}
            wanted["tile_size"] = tile_size
            wanted["precision"] = precision if precision != "fp32" else None
            wanted["denoiser"] = denoiser
            wanted["denoiser_weights"] = str(denoiser_weights) if denoiser_weights else None
            for key, value in wanted.items():
                if value is None:
                    continue
                if key in accepted:
                    overrides[key] = value
                elif key == "precision" and value == "auto":
                    continue  # auto on a defense without SR: nothing to do
                elif key.startswith("denoiser"):
                    fail(f"--{key.replace('_', '-')}: defense {name!r} has no denoising stage (use paper)")
                elif key != "tile_size":
                    fail(f"--{key.replace('_', '-')}: defense {name!r} has no super-resolution stage")
        return create_defense(spec, **overrides)
    except (KeyError, TypeError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(f"--defense {spec}: {msg}")


def _precision(value: str) -> str:
    from ..purification.precision import PRECISIONS

    if value not in PRECISIONS:
        fail(f"--precision: expected one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


_DENOISER_HELP = (
    "Denoising before SR: wavelet (the paper), spandrel (learned, replaces it), wavelet+spandrel, none."
)


def _output_names(inputs: list[Path], out: Path) -> list[Path]:
    seen: dict[str, int] = {}
    names = []
    for p in inputs:
        stem = p.stem or "image"
        k = seen.get(stem, 0)
        seen[stem] = k + 1
        names.append(out / (f"{stem}.png" if k == 0 else f"{stem}-{k}.png"))
    return names


@app.command()
def purify(
    inputs: Annotated[list[Path], typer.Argument(help="Image files (any format PIL reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the purified PNG files.")],
    defense: Annotated[str, typer.Option(help="Defense spec, e.g. paper, wd:sigma=0.02.")] = "paper",
    sr: Annotated[str | None, typer.Option("--sr", help="Super-resolution backend.")] = None,
    sr_weights: Annotated[
        Path | None, typer.Option("--sr-weights", help="Weights for the SR backend (edsr, spandrel).")
    ] = None,
    denoiser: Annotated[str | None, typer.Option("--denoiser", help=_DENOISER_HELP)] = None,
    denoiser_weights: Annotated[
        Path | None, typer.Option("--denoiser-weights", help="Checkpoint of the learned denoiser.")
    ] = None,
    tile_size: Annotated[
        int, typer.Option(help="Super-resolve in tiles of this many input pixels (0: whole image).")
    ] = 256,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
) -> None:
    """Purify image files and write the results (the 2x images for the paper defense) as PNG.

    Every input that can be read is processed; each failure is reported with its reason and
    the command exits with status 1 if any failed. Files are written atomically.
    """
    from ..data.io import ImageReadError, read_image, write_png

    dev = resolve_device(device)
    purifier = build_defense(
        defense, sr, sr_weights, tile_size or None, denoiser, denoiser_weights, _precision(precision)
    )
    purifier = purifier.to(dev).eval()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out {out}: cannot create the folder: {exc}")
    failures: list[tuple[Path, str]] = []
    written = 0
    with progress_bar(not quiet) as prog:
        task = prog.add_task("purifying", total=len(inputs))
        for src, dst in zip(inputs, _output_names(inputs, out), strict=True):
            try:
                image = read_image(src).to(dev)
                with torch.no_grad():
                    result = purifier(image.unsqueeze(0))[0]
                write_png(dst, result.cpu())
                written += 1
            except (ImageReadError, OSError, ValueError, RuntimeError) as exc:
                failures.append((src, str(exc)))
            prog.advance(task)
    console.print(f"wrote {written} purified image(s) to {out}")
    for src, why in failures:
        err_console.print(f"[red]failed[/] {src}: {why}", highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command()
def classify(
    inputs: Annotated[list[Path], typer.Argument(help="Image files (any format PIL reads).")],
    classifier: Annotated[
        str, typer.Option(help="Registered name, timm:NAME, torchvision:NAME or module.py:factory.")
    ] = "efficientnet_lite0",
    classifier_weights: Annotated[
        Path | None, typer.Option("--classifier-weights", help="Weights for a module.py:factory model.")
    ] = None,
    defense: Annotated[str, typer.Option(help="Defense spec applied before classifying.")] = "none",
    sr: Annotated[str | None, typer.Option("--sr", help="Super-resolution backend.")] = None,
    sr_weights: Annotated[
        Path | None, typer.Option("--sr-weights", help="Weights for the SR backend.")
    ] = None,
    denoiser: Annotated[str | None, typer.Option("--denoiser", help=_DENOISER_HELP)] = None,
    denoiser_weights: Annotated[
        Path | None, typer.Option("--denoiser-weights", help="Checkpoint of the learned denoiser.")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=1000, help="Classes to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
) -> None:
    """Classify image files, optionally behind a defense, and show the top-k classes.

    Images get the classifier's standard preprocessing (resize the shorter side, centre crop).
    Each unreadable input is reported; the exit status is 1 if any failed.
    """
    from ..data.io import ImageReadError, read_image
    from ..data.transforms import resize_center_crop
    from ..models import create_classifier
    from ..models.imagenet import imagenet_classes, imagenet_wnids
    from ..purification import Defended

    dev = resolve_device(device)
    try:
        model = create_classifier(classifier, weights=classifier_weights)
    except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(f"--classifier {classifier}: {msg}")
    cfg = model.cfg
    purifier = build_defense(defense, sr, sr_weights, None, denoiser, denoiser_weights, _precision(precision))
    defended = Defended(purifier, model).to(dev).eval()
    names, wnids = imagenet_classes(), imagenet_wnids()
    results: list[dict[str, Any]] = []
    failures: list[dict[str, str]] = []
    for src in inputs:
        try:
            image = resize_center_crop(read_image(src), cfg.input_size[-1], crop_pct=cfg.crop_pct)
            with torch.no_grad():
                probs = defended(image.unsqueeze(0).to(dev)).softmax(-1)[0].cpu()
        except (ImageReadError, OSError, ValueError, RuntimeError) as exc:
            failures.append({"file": str(src), "error": str(exc)})
            continue
        top = probs.topk(min(top_k, probs.numel()))
        preds = []
        for rank, (p, i) in enumerate(zip(top.values.tolist(), top.indices.tolist(), strict=True), 1):
            named = len(names) == probs.numel()
            preds.append(
                {
                    "rank": rank,
                    "index": i,
                    "wnid": wnids[i] if named else None,
                    "name": names[i] if named else str(i),
                    "probability": round(p, 6),
                }
            )
        results.append({"file": str(src), "defense": defense, "predictions": preds})
    if as_json:
        print_json({"classifier": classifier, "results": results, "errors": failures})
    else:
        for r in results:
            table = Table(title=f"{r['file']}  (defense: {defense})", title_justify="left")
            table.add_column("#", justify="right")
            table.add_column("class")
            table.add_column("wnid")
            table.add_column("probability", justify="right")
            for p in r["predictions"]:
                table.add_row(str(p["rank"]), p["name"], p["wnid"] or "", f"{p['probability']:.4f}")
            console.print(table)
        for f in failures:
            err_console.print(f"[red]failed[/] {f['file']}: {f['error']}", highlight=False)
    if failures:
        raise typer.Exit(1)


_LIST_CHOICES = ("all", "classifiers", "sr", "denoisers", "defenses", "attacks")


@app.command("list")
def list_(
    what: Annotated[
        str, typer.Argument(help="all, classifiers, sr, denoisers, defenses or attacks.")
    ] = "all",
) -> None:
    """List the registered classifiers, super-resolution models, denoisers, defenses and attacks."""
    if what not in _LIST_CHOICES:
        fail(f"list: expected one of {', '.join(_LIST_CHOICES)}, got {what!r}")
    if what in ("all", "classifiers"):
        from ..models import get_classifier_cfg, list_classifiers

        t = Table(title="classifiers (also timm:NAME, torchvision:NAME, module.py:factory)")
        for col in ("name", "input", "description", "source", "license"):
            t.add_column(col)
        for name in list_classifiers():
            cfg = get_classifier_cfg(name)
            size = "x".join(map(str, cfg.input_size))
            t.add_row(name, size, cfg.description, cfg.source, cfg.license)
        console.print(t)
    if what in ("all", "sr"):
        from ..purification.superres import list_sr_models

        t = Table(title="super-resolution models (--sr NAME or NAME:option=value)")
        for col in ("name", "scale", "parameters", "options", "description", "license"):
            t.add_column(col)
        for info in list_sr_models():
            scale = f"x{info.scale}" if info.scale else "from file"
            n_params = "from file" if info.n_params is None else f"{info.n_params / 1e6:.2f}M"
            n_params = "0" if info.n_params == 0 else n_params
            t.add_row(info.name, scale, n_params, info.options, info.description, info.license)
        console.print(t)
    if what in ("all", "denoisers"):
        from ..purification.learned_denoise import list_denoisers

        t = Table(title="denoisers (--denoiser NAME; paper_defense(denoiser=...))")
        for col in ("name", "options", "description", "license"):
            t.add_column(col)
        for d in list_denoisers():
            t.add_row(d.name, d.options, d.description, d.license)
        console.print(t)
    if what in ("all", "defenses"):
        from ..purification import list_defenses

        t = Table(title="defenses")
        for col in ("name", "differentiable", "randomized", "description", "reference"):
            t.add_column(col)
        for d in list_defenses():
            t.add_row(
                d.name,
                "yes" if d.differentiable else "no (BPDA)",
                "yes" if d.randomized else "no",
                d.description,
                d.reference,
            )
        console.print(t)
    if what in ("all", "attacks"):
        from ..attacks import create_attack, list_attacks

        t = Table(title="attacks")
        for col in ("name", "norm", "default eps", "description"):
            t.add_column(col)
        for name in list_attacks():
            a = create_attack(name)
            doc = (type(a).__doc__ or "").strip().splitlines()
            eps = "minimal norm" if a.eps is None else f"{a.eps:.4g}"
            t.add_row(name, str(a.norm or "-"), eps, doc[0] if doc else "")
        console.print(t)
