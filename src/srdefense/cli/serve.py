"""``srdefense serve``: the purification service (FastAPI + uvicorn) and its web page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._app import app
from ._common import console, fail, resolve_device


def _parse_fraction(text: str, option: str) -> float:
    try:
        if "/" in text:
            a, _, b = text.partition("/")
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        fail(f"{option}: expected a number such as 0.0627 or 16/255, got {text!r}")


@app.command()
def serve(
    defense: Annotated[str, typer.Option(help="Default defense spec, e.g. paper, wd:sigma=0.02.")] = "paper",
    classifier: Annotated[
        str, typer.Option(help="Registered name, timm:NAME, torchvision:NAME or module.py:factory.")
    ] = "efficientnet_lite0",
    classifier_weights: Annotated[
        Path | None, typer.Option("--classifier-weights", help="Weights for the classifier.")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto.")] = "cpu",
    host: Annotated[
        str, typer.Option(help="Address to bind; anything but loopback needs --api-key.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="SRDEFENSE_API_KEY",
            show_default=False,
            help="Key required on every /v1 request (X-API-Key header).",
        ),
    ] = None,
    cors: Annotated[
        list[str] | None,
        typer.Option("--cors", help="Allow this origin by CORS (repeatable); off if absent."),
    ] = None,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body in MiB (413 beyond).")] = 20.0,
    max_pixels: Annotated[
        int | None, typer.Option(help="Largest image in pixels (413 beyond); default: the reader's limit.")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Most images the worker runs in one batch.")] = 8,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits to fill after its first request.")
    ] = 10.0,
    max_eps: Annotated[str, typer.Option(help="Largest attack eps (Linf), e.g. 16/255.")] = "16/255",
    max_steps: Annotated[int, typer.Option(help="Most PGD steps per attack request.")] = 20,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the defense over HTTP: /v1/purify, /v1/classify, /v1/attack, /metrics and a web page at /.

    The model is loaded once; concurrent requests are run in batches by one worker. SIGTERM
    (or Ctrl-C) stops accepting connections and finishes the requests in flight.
    """
    try:
        import uvicorn

        from ..serve import ServeConfig, create_app
    except ImportError as exc:
        fail(f"serve: needs the optional 'serve' extra: pip install 'srdefense[serve]' ({exc})")
    from ..data.io import DEFAULT_MAX_PIXELS
    from ..models import create_classifier
    from ..purification.registry import create_defense

    dev = resolve_device(device)
    try:
        config = ServeConfig(
            classifier=classifier,
            classifier_weights=str(classifier_weights) if classifier_weights else None,
            defense=defense,
            device=str(dev),
            host=host,
            port=port,
            api_key=api_key or None,
            cors=tuple(cors or ()),
            max_upload_mb=max_upload_mb,
            max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
            max_batch=max_batch,
            max_wait_ms=max_wait_ms,
            max_eps=_parse_fraction(max_eps, "--max-eps"),
            max_steps=max_steps,
        )
    except ValueError as exc:
        fail(str(exc))
    try:
        create_defense(defense)
    except (KeyError, TypeError, ValueError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(f"--defense {defense}: {msg}")
    try:
        model = create_classifier(classifier, weights=classifier_weights, device=dev)
    except (KeyError, ValueError, TypeError, ImportError, FileNotFoundError, RuntimeError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(f"--classifier {classifier}: {msg}")
    application = create_app(config, classifier=model)
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"srdefense serve: http://{shown}:{port}/  (classifier {classifier}, defense {defense}, {dev})",
        highlight=False,
    )
    uvicorn.run(application, host=host, port=port, log_level=log_level, access_log=False)
