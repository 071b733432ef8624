"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

Every 4xx names what is wrong and what is allowed. Handlers turn FastAPI's own errors
(404, 405, validation) into the same shape, so a client sees one format everywhere.
"""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("serve")


class APIError(Exception):
    """An error response. ``kind`` labels the ``kokoro_errors_total`` metric."""

    def __init__(self, status: int, message: str, *, param: str | None = None,
                 code: str | None = None, type: str = "invalid_request_error",
                 kind: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.kind = kind or code or type
        self.headers = headers or {}

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def install_handlers(app: FastAPI, on_error=None) -> None:
    """OpenAI-shaped responses for APIError, HTTP errors, validation errors and bugs.
    ``on_error(kind)`` is called for each (the metrics counter)."""

    def count(kind: str) -> None:
        if on_error is not None:
            on_error(kind)

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        count(exc.kind)
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404:
            message = (f"no route {request.method} {request.url.path}; this server has "
                       "POST /v1/audio/speech, GET /v1/models, GET /v1/audio/voices, "
                       "GET /health, GET /metrics")
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        count(code)
        return JSONResponse(error_body(message, code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        count("invalid_request")
        return JSONResponse(error_body(f"invalid request: {first.get('msg', exc)}", param=param,
                                       code="invalid_request"), status_code=400)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        count("internal")
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}",
                                       type="server_error", code="internal_error"),
                            status_code=500)
