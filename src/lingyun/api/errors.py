"""Render every error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lingyun.errors import InvalidRequestError, LingyunError, error_for_status

logger = logging.getLogger(__name__)


def error_response(exc: LingyunError) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.request_id:
        headers.setdefault("x-request-id", exc.request_id)
    return JSONResponse(exc.to_body(), status_code=exc.status_code, headers=headers)


async def _lingyun_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LingyunError)
    return error_response(exc)


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cls = error_for_status(exc.status_code)
    err = cls(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    if exc.status_code == 405:
        err = InvalidRequestError("Method not allowed.", code="method_not_allowed")
        return JSONResponse(err.to_body(), status_code=405)
    return JSONResponse(err.to_body(), status_code=exc.status_code)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    err = InvalidRequestError(str(first.get("msg", "Invalid request.")), param=param)
    return JSONResponse(err.to_body(), status_code=400)


async def _unhandled(_: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    err = LingyunError("The server had an error while processing your request.")
    return JSONResponse(err.to_body(), status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(LingyunError, _lingyun_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled)
