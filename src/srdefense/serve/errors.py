"""Errors of the service: one exception type, one JSON shape for every error response.

Every error the server sends, its own or FastAPI's (validation, 404, 405), has the body
``{"error": {"status": 422, "code": "unknown_defense", "message": "..."}}``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ServiceError(Exception):
    """An error with an HTTP status, a stable code and a message for people.

    Args:
        status: the HTTP status (413, 415, 422, ...).
        code: a short machine-readable code (``too_large``, ``unknown_defense``, ...).
        message: what went wrong and what was expected.
        headers: extra response headers (``WWW-Authenticate`` for 401).
    """

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"status": status, "code": code, "message": message}}


def error_response(exc: ServiceError) -> JSONResponse:
    """The JSON response for ``exc``."""
    return JSONResponse(error_body(exc.status, exc.code, exc.message), exc.status, headers=exc.headers)


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "body", "path", "header")]
        where = ".".join(loc) or "request"
        got = err.get("input")
        shown = "" if got is None or isinstance(got, dict) else f", got {got!r}"
        parts.append(f"{where}: {err.get('msg', 'invalid value')}{shown}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Make every error response of ``app`` a JSON body of the one shape."""

    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(422, "invalid_parameter", _describe_validation(exc)), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(exc.status_code, code, str(exc.detail)), exc.status_code, headers=exc.headers
        )
