"""Render every error in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lingyun.errors import InvalidRequestError, LingyunError, error_for_status

logger = logging.getLogger(__name__)


def error_response(exc: LingyunError, status_code: int | None = None) -> JSONResponse:
    headers = dict(exc.headers)
    body = exc.to_body()
    if exc.request_id:
        headers.setdefault("x-request-id", exc.request_id)
        body["error"]["request_id"] = exc.request_id
    return JSONResponse(body, status_code=status_code or exc.status_code, headers=headers)


def _with_id(request: Request, exc: LingyunError) -> LingyunError:
    """The request's id (observability/request_id.py) on the error; its code for metrics."""
    state = request.scope.get("state")
    if state is not None:
        state["error_code"] = exc.code
        if exc.request_id is None:
            exc.request_id = state.get("public_request_id")
    return exc


async def _lingyun_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LingyunError)
    return error_response(_with_id(request, exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    cls = error_for_status(exc.status_code)
    err = cls(str(exc.detail), code="not_found" if exc.status_code == 404 else None)
    if exc.status_code == 405:
        err = InvalidRequestError("Method not allowed.", code="method_not_allowed")
    return error_response(_with_id(request, err), exc.status_code)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    err = InvalidRequestError(str(first.get("msg", "Invalid request.")), param=param)
    return error_response(_with_id(request, err), 400)


# Maps a third-party exception that escaped its adapter to the client's error (e.g. the
# database unreachable: a 503), or None for a genuine bug (a 500).
Translator = Callable[[Exception], LingyunError | None]


def _unhandled(translators: Sequence[Translator]) -> Callable[..., Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        for translate in translators:
            err = translate(exc)
            if err is not None:
                # the class alone: a driver's message may carry the statement's parameters
                logger.warning("%s: answered %d %s", type(exc).__name__, err.status_code, err.code)
                return error_response(_with_id(request, err))
        logger.exception("unhandled error", exc_info=exc)
        err = LingyunError("The server had an error while processing your request.")
        return JSONResponse(err.to_body(), status_code=500)

    return handle


def install_error_handlers(app: FastAPI, translators: Sequence[Translator] = ()) -> None:
    app.add_exception_handler(LingyunError, _lingyun_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled(tuple(translators)))
