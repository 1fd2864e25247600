"""``srdefense purify``, ``classify`` and ``list``: thin shells over the library."""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.markup import escape

from ..data.io import DEFAULT_MAX_PIXELS
from ..models.registry import CLASSIFIERS
from ..models.schemes import SCHEMES
from ..purification.learned_denoise import DENOISERS
from ..purification.precision import PRECISIONS
from ..purification.registry import DEFENSES
from ..purification.sr_backends import SR_MODELS
from ._app import app
from ._common import console, err_console, fail, print_json, progress_bar, resolve_device

# Help texts name what the registries hold (never a hand-written list of names).
PRECISION_HELP = (
    f"Super-resolution arithmetic: {', '.join(PRECISIONS)} (auto: bf16 where the CPU has "
    "AVX512-BF16/AMX or on CUDA, else fp32)."
)
_DEFENSE_HELP = (
    f"Defense spec NAME or NAME:key=value (e.g. wd:sigma=0.02); NAME: {', '.join(DEFENSES.names())}."
)
_SCHEMES = ", ".join(f"{s}:NAME" for s in SCHEMES.names())
_CLASSIFIER_HELP = f"Classifier: {', '.join(CLASSIFIERS.names())}, {_SCHEMES} or module.py:factory."
_SR_HELP = f"Super-resolution backend: {', '.join(SR_MODELS.names())} (or NAME:option=value)."


def build_defense(
    spec: str,
    sr: str | None,
    sr_weights: Path | None,
    tile_size: int | None,
    denoiser: str | None = None,
    denoiser_weights: Path | None = None,
    sr_weights_sha256: str | None = None,
    precision: str = "fp32",
) -> Any:
    """Create a defense from ``--defense`` and the SR / denoiser options, with CLI-grade errors.

    Exactly one ``error:`` line is printed for a bad combination (``fail`` raises
    ``typer.Exit``, itself a ``RuntimeError``, so it is never called inside the ``try``).
    """
    if denoiser_weights is not None and denoiser is None:
        denoiser = "spandrel"  # --denoiser-weights alone: the learned denoiser replaces wavelet
    from ..purification.registry import DEFENSES, create_defense, parse_defense_spec

    if sr_weights_sha256 is not None and sr_weights is None:
        fail("--sr-weights-sha256: pins the file given with --sr-weights, and none was given")
    problem: str | None = None
    try:
        name, _ = parse_defense_spec(spec)
        info = DEFENSES.get(name) if name in DEFENSES else None
        overrides: dict[str, Any] = {}
        if info is not None:
            accepted = inspect.signature(info.factory).parameters
            wanted: dict[str, Any] = {"sr_model": sr, "sr_weights": str(sr_weights) if sr_weights else None}
            wanted["sr_weights_sha256"] = sr_weights_sha256
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
                    flag = key.replace("_", "-")
                    problem = f"--{flag}: defense {name!r} has no denoising stage (use paper)"
                    break
                elif key != "tile_size":
                    problem = f"--{key.replace('_', '-')}: defense {name!r} has no super-resolution stage"
                    break
        if problem is None:
            return create_defense(spec, **overrides)
    except (KeyError, TypeError, ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        problem = f"--defense {spec}: {msg}"
    fail(str(problem))


def _precision(value: str) -> str:
    from ..purification.precision import PRECISIONS

    if value not in PRECISIONS:
        fail(f"--precision: expected one of {', '.join(PRECISIONS)}, got {value!r}")
    return value


_DENOISER_HELP = (
    f"Denoising before SR: {', '.join(DENOISERS.names())}, a chain such as wavelet+spandrel, or none "
    "(wavelet is the paper's)."
)


def output_names(inputs: list[Path], out: Path) -> list[Path]:
    """The output file of each input of ``purify``: unique and predictable.

    - ``DIR/NAME.EXT`` becomes ``OUT/NAME.png``;
    - inputs that share a stem keep their extension: ``a.png`` and ``a.jpg`` become
      ``OUT/a.png.png`` and ``OUT/a.jpg.png``;
    - inputs that share a file name too (``x/a.png``, ``y/a.png``) keep their path relative to
      the folder those inputs have in common: ``OUT/x/a.png``, ``OUT/y/a.png``.

    Names are compared ignoring case, as on case-insensitive file systems.

    Args:
        inputs: the input files, without duplicates (compared as absolute paths).
        out: the output folder.

    Returns:
        One path under ``out`` per input, all different.

    Raises:
        ValueError: naming the inputs if two of them still map to the same output (e.g.
            ``A.png`` and ``a.png`` in one folder).
    """
    absolute = [Path(os.path.abspath(p)) for p in inputs]
    by_stem: dict[str, list[int]] = {}
    for i, p in enumerate(absolute):
        by_stem.setdefault((p.stem or "image").lower(), []).append(i)
    rel: list[Path] = [Path()] * len(inputs)
    for idx in by_stem.values():
        if len(idx) == 1:
            rel[idx[0]] = Path(f"{absolute[idx[0]].stem or 'image'}.png")
            continue
        by_name: dict[str, list[int]] = {}
        for i in idx:
            by_name.setdefault(absolute[i].name.lower(), []).append(i)
        for same in by_name.values():
            if len(same) == 1:
                rel[same[0]] = Path(f"{absolute[same[0]].name}.png")
                continue
            common = Path(os.path.commonpath([absolute[i].parent for i in same]))
            for i in same:
                rel[i] = absolute[i].parent.relative_to(common) / f"{absolute[i].stem or 'image'}.png"
    files: dict[str, int] = {}
    folders = {str(parent).lower() for r in rel for parent in r.parents if str(parent) != "."}
    for i, r in enumerate(rel):
        key = str(r).lower()
        if key in files or key in folders:
            other = files.get(key)
            clash = f"{inputs[other]} and {inputs[i]}" if other is not None else str(inputs[i])
            raise ValueError(f"{clash}: would be written to the same output {out / r}; rename one of them")
        files[key] = i
    return [out / r for r in rel]


def _file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file ``path`` leads to, ``None`` if there is none."""
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


@app.command()
def purify(
    inputs: Annotated[list[Path], typer.Argument(help="Image files (any format PIL reads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the purified PNG files.")],
    defense: Annotated[str, typer.Option(help=_DEFENSE_HELP)] = "paper",
    sr: Annotated[str | None, typer.Option("--sr", help=_SR_HELP)] = None,
    sr_weights: Annotated[
        Path | None, typer.Option("--sr-weights", help="Weights for the SR backend (edsr, spandrel).")
    ] = None,
    denoiser: Annotated[str | None, typer.Option("--denoiser", help=_DENOISER_HELP)] = None,
    denoiser_weights: Annotated[
        Path | None, typer.Option("--denoiser-weights", help="Checkpoint of the learned denoiser.")
    ] = None,
    sr_weights_sha256: Annotated[
        str | None,
        typer.Option("--sr-weights-sha256", help="Pin for --sr-weights: its sha256 (or >= 8 hex digits)."),
    ] = None,
    tile_size: Annotated[
        int, typer.Option(help="Super-resolve in tiles of this many input pixels (0: whole image).")
    ] = 256,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace existing output files (never an input file).")
    ] = False,
    max_pixels: Annotated[
        int,
        typer.Option("--max-pixels", min=0, help="Refuse images with more pixels (W x H); 0: no limit."),
    ] = DEFAULT_MAX_PIXELS,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
) -> None:
    """Purify image files and write the results (the 2x images for the paper defense) as PNG.

    ``DIR/NAME.EXT`` is written to ``OUT/NAME.png``; inputs that share a stem keep their
    extension (``a.jpg`` -> ``a.jpg.png``), inputs that share a file name keep their sub-folder.
    An existing file is never replaced without ``--overwrite``, and an input never.

    Every input that can be read is processed; each failure is reported with its reason and
    the command exits with status 1 if any failed. Files are written atomically.
    """
    from ..data.io import ImageReadError, read_image, write_png

    dev = resolve_device(device)
    purifier = (
        build_defense(
            defense,
            sr,
            sr_weights,
            tile_size or None,
            denoiser,
            denoiser_weights,
            sr_weights_sha256,
            _precision(precision),
        )
        .to(dev)
        .eval()
    )
    unique: list[Path] = []
    seen: set[str] = set()
    for src in inputs:
        key = os.path.abspath(src)
        if key in seen:
            note = f"[yellow]note[/] {escape(str(src))}: given more than once, purified once"
            err_console.print(note, highlight=False, soft_wrap=True)
            continue
        seen.add(key)
        unique.append(src)
    try:
        names = output_names(unique, out)
    except ValueError as exc:
        fail(str(exc))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"--out {out}: cannot create the folder: {exc}")
    input_ids = {i for i in map(_file_id, unique) if i is not None}  # (device, inode): hard links too
    failures: list[tuple[Path, str]] = []
    written = 0
    with progress_bar(not quiet) as prog:
        task = prog.add_task("purifying", total=len(unique))
        for src, dst in zip(unique, names, strict=True):
            prog.advance(task)
            if _file_id(dst) in input_ids:
                why = f"its output {dst} is an input file; not replaced (choose another --out)"
                failures.append((src, why))
                continue
            if dst.exists() and not overwrite:
                failures.append((src, f"{dst} exists; not replaced (pass --overwrite to replace it)"))
                continue
            try:
                image = read_image(src, max_pixels=max_pixels or None).to(dev)
                with torch.no_grad():
                    result = purifier(image.unsqueeze(0))[0]
                dst.parent.mkdir(parents=True, exist_ok=True)
                write_png(dst, result.cpu(), overwrite=overwrite)
                written += 1
            except FileExistsError:
                failures.append((src, f"{dst} exists; not replaced (pass --overwrite to replace it)"))
            except (ImageReadError, OSError, ValueError, RuntimeError) as exc:
                failures.append((src, str(exc)))
    done = f"wrote {written} purified image(s) to {out}"
    console.print(done, highlight=False, markup=False, soft_wrap=True)
    for src, why in failures:
        msg = f"[red]failed[/] {escape(str(src))}: {escape(why)}"
        err_console.print(msg, highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


@app.command()
def classify(
    inputs: Annotated[list[Path], typer.Argument(help="Image files (any format PIL reads).")],
    classifier: Annotated[str, typer.Option(help=_CLASSIFIER_HELP)] = "efficientnet_lite0",
    classifier_weights: Annotated[
        Path | None, typer.Option("--classifier-weights", help="Weights for a module.py:factory model.")
    ] = None,
    classifier_weights_sha256: Annotated[
        str | None,
        typer.Option("--classifier-weights-sha256", help="Pin for --classifier-weights: its sha256."),
    ] = None,
    defense: Annotated[str, typer.Option(help="Applied before classifying. " + _DEFENSE_HELP)] = "none",
    sr: Annotated[str | None, typer.Option("--sr", help=_SR_HELP)] = None,
    sr_weights: Annotated[
        Path | None, typer.Option("--sr-weights", help="Weights for the SR backend.")
    ] = None,
    denoiser: Annotated[str | None, typer.Option("--denoiser", help=_DENOISER_HELP)] = None,
    denoiser_weights: Annotated[
        Path | None, typer.Option("--denoiser-weights", help="Checkpoint of the learned denoiser.")
    ] = None,
    sr_weights_sha256: Annotated[
        str | None,
        typer.Option("--sr-weights-sha256", help="Pin for --sr-weights: its sha256 (or >= 8 hex digits)."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", min=1, max=1000, help="Classes to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
    max_pixels: Annotated[
        int,
        typer.Option("--max-pixels", min=0, help="Refuse images with more pixels (W x H); 0: no limit."),
    ] = DEFAULT_MAX_PIXELS,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "fp32",
) -> None:
    """Classify image files, optionally behind a defense, and show the top-k classes.

    Images get the classifier's standard preprocessing (resize the shorter side, centre crop).
    Each unreadable input is reported; the exit status is 1 if any failed.
    """
    from ..models import create_classifier
    from ..predict import classify as classify_images

    dev = resolve_device(device)
    if classifier_weights_sha256 is not None and classifier_weights is None:
        fail("--classifier-weights-sha256: pins the file given with --classifier-weights, and none was given")
    try:
        pin = classifier_weights_sha256
        model = create_classifier(classifier, weights=classifier_weights, weights_sha256=pin)
    except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(f"--classifier {classifier}: {msg}")
    purifier = build_defense(
        defense, sr, sr_weights, None, denoiser, denoiser_weights, sr_weights_sha256, _precision(precision)
    )
    res = classify_images(
        inputs, classifier=model, defense=purifier, top_k=top_k, device=dev, max_pixels=max_pixels or None
    )
    results: list[dict[str, Any]] = [
        {
            "file": r.source,
            "defense": defense,
            "predictions": [
                {
                    "rank": p.rank,
                    "index": p.index,
                    "wnid": p.wnid,
                    "name": p.name,
                    "probability": round(p.probability, 6),
                }
                for p in r.predictions
            ],
        }
        for r in res.results
    ]
    failures = [{"file": f.source, "error": f.error} for f in res.errors]
    if as_json:
        print_json({"classifier": classifier, "results": results, "errors": failures})
    else:
        from ._tables import Column, print_table

        cols = [Column("#", key=True, justify="right"), Column("class"), Column("wnid", key=True)]
        cols += [Column("probability", key=True, justify="right")]
        for r in results:
            preds = r["predictions"]
            cells = [[str(p["rank"]), p["name"], p["wnid"] or "", f"{p['probability']:.4f}"] for p in preds]
            # the file name as typed, on its own line (never folded; the terminal wraps it)
            console.print(f"{r['file']}  (defense: {defense})", soft_wrap=True, highlight=False, markup=False)
            print_table(console, None, cols, cells)
        for f in failures:
            msg = f"[red]failed[/] {escape(f['file'])}: {escape(f['error'])}"
            err_console.print(msg, highlight=False, soft_wrap=True)
    if failures:
        raise typer.Exit(1)


_LIST_CHOICES = ("all", "classifiers", "sr", "denoisers", "defenses", "attacks", "settings")


@app.command("list")
def list_(
    what: Annotated[
        str, typer.Argument(help="all, classifiers, sr, denoisers, defenses, attacks or settings.")
    ] = "all",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")] = False,
) -> None:
    """List the registered classifiers, SR models, denoisers, defenses, attacks and threat models.

    Names are never cut: on a narrow terminal the long reference columns are left out
    (``--json`` always has every field).
    """
    if what not in _LIST_CHOICES:
        fail(f"list: expected one of {', '.join(_LIST_CHOICES)}, got {what!r}")
    from ._tables import Column, print_table

    tables: dict[str, tuple[str, list[Column], list[dict[str, Any]]]] = {}
    rows: list[dict[str, Any]]
    if what in ("all", "classifiers"):
        from ..models import list_classifiers

        rows = []
        for cfg in list_classifiers():
            rows.append(
                {
                    "name": cfg.name,
                    "input": "x".join(map(str, cfg.input_size)),
                    "description": cfg.description,
                    "source": cfg.source,
                    "license": cfg.license,
                }
            )
        cols = [Column("name", key=True), Column("input", key=True), Column("description")]
        cols += [Column("source", optional=True), Column("license", optional=True)]
        title = f"classifiers (also {_SCHEMES}, module.py:factory)"
        tables["classifiers"] = (title, cols, rows)
    if what in ("all", "sr"):
        from ..purification.superres import list_sr_models

        rows = []
        for info in list_sr_models():
            n_params = None if info.n_params is None else int(info.n_params)
            rows.append(
                {
                    "name": info.name,
                    "scale": info.scale,
                    "parameters": n_params,
                    "options": info.options,
                    "description": info.description,
                    "license": info.license,
                }
            )
        cols = [Column("name", key=True), Column("scale", key=True), Column("parameters", key=True)]
        cols += [Column("options"), Column("description"), Column("license", optional=True)]
        tables["sr"] = ("super-resolution models (--sr NAME or NAME:option=value)", cols, rows)
    if what in ("all", "denoisers"):
        from ..purification.learned_denoise import list_denoisers

        rows = [
            {"name": d.name, "options": d.options, "description": d.description, "license": d.license}
            for d in list_denoisers()
        ]
        cols = [Column("name", key=True), Column("options"), Column("description")]
        cols += [Column("license", optional=True)]
        tables["denoisers"] = ("denoisers (--denoiser NAME; paper_defense(denoiser=...))", cols, rows)
    if what in ("all", "defenses"):
        from ..purification import list_defenses

        rows = [
            {
                "name": d.name,
                "differentiable": d.differentiable,
                "randomized": d.randomized,
                "description": d.description,
                "reference": d.reference,
            }
            for d in list_defenses()
        ]
        cols = [Column("name", key=True), Column("gradient", key=True), Column("random", key=True)]
        cols += [Column("description"), Column("reference", optional=True)]
        tables["defenses"] = ("defenses", cols, rows)
    if what in ("all", "attacks"):
        from ..attacks import create_attack, list_attacks

        rows = []
        for attack_info in list_attacks():
            a = create_attack(attack_info.name)
            rows.append(
                {
                    "name": attack_info.name,
                    "norm": a.norm,
                    "distance": a.distance,
                    "default_eps": a.eps,
                    "description": attack_info.description,
                    "reference": attack_info.reference,
                }
            )
        cols = [Column("name", key=True), Column("norm", key=True), Column("default eps", key=True)]
        cols += [Column("description")]
        tables["attacks"] = ("attacks", cols, rows)
    if what in ("all", "settings"):
        from ..evaluation.threats import list_threat_models

        rows = [
            {"name": t.name, "description": t.description, "reference": t.reference}
            for t in list_threat_models()
        ]
        cols = [Column("name", key=True), Column("description")]  # the reference is in --json
        tables["settings"] = ("threat models (evaluate --setting NAME,...)", cols, rows)
    if as_json:
        print_json({key: rows for key, (_, _, rows) in tables.items()})
        return
    for key, (title, cols, rows) in tables.items():
        cells = [[_list_cell(key, c.header, r) for c in cols] for r in rows]
        print_table(console, title, cols, cells)


def _list_cell(table: str, header: str, row: dict[str, Any]) -> str:
    """The text shown for one cell of a ``list`` table."""
    if table == "sr" and header == "scale":
        return f"x{row['scale']}" if row["scale"] else "from file"
    if table == "sr" and header == "parameters":
        n = row["parameters"]
        return "from file" if n is None else ("0" if n == 0 else f"{n / 1e6:.2f}M")
    if table == "defenses" and header == "gradient":
        return "yes" if row["differentiable"] else "no (BPDA)"
    if table == "defenses" and header == "random":
        return "yes" if row["randomized"] else "no"
    if table == "attacks" and header == "norm":
        return str(row["norm"] or "-")
    if table == "attacks" and header == "default eps":
        return "minimal norm" if row["default_eps"] is None else f"{row['default_eps']:.4g}"
    return str(row[header])
