"""The FastAPI application: built by a factory, the model loaded once in the lifespan.

Routes are thin: they take typed parameters, call :class:`~srdefense.serve.service.PurificationService`
and return its typed answer. Access rules (API key on ``/v1``, CORS only when asked) and
metrics are set up here.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from torch import nn

from .config import ServeConfig
from .errors import ServiceError, install_error_handlers
from .metrics import Metrics
from .schemas import (
    AttackMethod,
    AttackResponse,
    ClassifyResponse,
    ErrorResponse,
    Health,
    ModelsResponse,
    Resolution,
)
from .service import PurificationService
from .uploads import read_image_bytes

# typed as FastAPI's `responses` argument
_ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (401, 413, 415, 422, 500, 503)
}

DefenseQ = Annotated[
    str | None,
    Query(description="defense spec, e.g. paper or wd:sigma=0.02 (default: the server's --defense)"),
]
ResolutionQ = Annotated[
    Resolution | None,
    Query(
        description="resolution policy: purified (classify the 2x image, the paper; alias 2x) or native "
        "(resize back)"
    ),
]
TopKQ = Annotated[int, Query(description="classes per list (1..the server's max_top_k)")]


def index_html() -> str:
    """The web page served at ``GET /`` (package data, no external resources)."""
    return resources.files("srdefense.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(config: ServeConfig | None = None, *, classifier: nn.Module | None = None) -> FastAPI:
    """Build the purification service's application.

    Args:
        config: the settings (default: :class:`ServeConfig`'s defaults).
        classifier: a classifier to serve instead of building ``config.classifier``.

    Returns:
        The FastAPI app; its lifespan loads the model and starts the batch worker, and on
        shutdown finishes the queued work.
    """
    config = config or ServeConfig()
    service = PurificationService(config, classifier)
    metrics = Metrics(lambda: service.queue_length)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start(metrics)
        try:
            yield
        finally:
            service.stop()

    app = FastAPI(
        title="srdefense purification service",
        version="0.1.0",
        summary="Wavelet denoising + super-resolution in front of a classifier (Mustafa et al., TIP 2020).",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics
    install_error_handlers(app)

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.observe_request(request.url.path, status, time.perf_counter() - t0)

    if config.cors:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors),
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            expose_headers=["X-Defense", "X-Image-Size", "X-Purified-Size", "X-Batch-Size", "Server-Timing"],
        )

    def require_key(request: Request) -> None:
        if not config.api_key:
            return
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if given is None or not hmac.compare_digest(given.encode(), config.api_key.encode()):
            raise ServiceError(
                401,
                "unauthorized",
                "this server requires an API key: send it in the X-API-Key header "
                "(or Authorization: Bearer KEY)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    keyed = [Depends(require_key)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(index_html())

    @app.get("/healthz")
    async def healthz() -> Health:
        return service.health()

    @app.get("/metrics", include_in_schema=False)
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=metrics.content_type)

    @app.get("/v1/models", dependencies=keyed, responses=_ERRORS)
    async def models() -> ModelsResponse:
        return service.models()

    @app.post(
        "/v1/purify",
        dependencies=keyed,
        responses={200: {"content": {"image/png": {}}}, **_ERRORS},
        response_class=Response,
    )
    async def purify(request: Request, defense: DefenseQ = None, resolution: ResolutionQ = None) -> Response:
        """Purify an image (multipart field ``image`` or the raw body); returns the purified PNG."""
        data = await read_image_bytes(request, config.max_upload_bytes)
        png, headers = await service.purify(data, defense, resolution)
        return Response(png, media_type="image/png", headers=headers)

    @app.post("/v1/classify", dependencies=keyed, responses=_ERRORS)
    async def classify(
        request: Request,
        defense: DefenseQ = None,
        resolution: ResolutionQ = None,
        top_k: TopKQ = 5,
        images: Annotated[bool, Query(description="also return the input and purified images")] = False,
    ) -> ClassifyResponse:
        """Top-k predictions without and with the defense, with the time per stage."""
        data = await read_image_bytes(request, config.max_upload_bytes)
        return await service.classify(data, defense, resolution, top_k, images)

    @app.post("/v1/attack", dependencies=keyed, responses=_ERRORS)
    async def attack(
        request: Request,
        method: Annotated[AttackMethod, Query(description="fgsm or pgd")] = "fgsm",
        eps: Annotated[str, Query(description="Linf bound, e.g. 4/255 or 0.0157")] = "4/255",
        steps: Annotated[int, Query(description="PGD iterations (FGSM: 1)")] = 10,
        defense: DefenseQ = None,
        resolution: ResolutionQ = None,
        top_k: TopKQ = 5,
        label: Annotated[
            int | None, Query(description="true class index (default: the clean prediction)")
        ] = None,
        seed: Annotated[int, Query(description="seed of PGD's random start")] = 0,
    ) -> AttackResponse:
        """Attack the undefended classifier; clean and adversarial predictions, without and with defense."""
        data = await read_image_bytes(request, config.max_upload_bytes)
        return await service.attack(
            data,
            defense=defense,
            resolution=resolution,
            method=method,
            eps=eps,
            steps=steps,
            top_k=top_k,
            label=label,
            seed=seed,
        )

    return app
