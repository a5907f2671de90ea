"""Request ids end to end, as one pure-ASGI middleware outside everything else.

Each request gets the gateway's own id (``req_…``, unique: the ledger's key, so a client can
never make two requests share a charge) and, when the client sent a valid ``X-Request-ID``
(1–128 characters of ``A-Z a-z 0-9 . _ : / @ = + -``), that id too. The client sees its own
id back, or ours when it sent none, as ``x-request-id`` on every response (errors included)
and as ``error.request_id`` in error bodies; replicas and clouds receive it as
``x-request-id`` (and ours as ``x-lingyun-request-id`` when the two differ); the request log
carries both. Log lines written while a request is handled carry its id
(``%(request_id)s``, see ``install_log_context``).
"""

from __future__ import annotations

import contextvars
import logging
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lingyun.gateway.context import new_request_id
from lingyun.observability import hooks

HEADER = b"x-request-id"
MAX_LEN = 128
_VALID = re.compile(rb"^[A-Za-z0-9._:/@=+-]{1,128}$")

CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("lingyun_request_id", default="-")

# Inference endpoints: counted here when they end before the pipeline made a context.
ENDPOINTS = {
    "/v1/chat/completions": "chat.completions",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}


def client_id(raw: bytes | None) -> str | None:
    """The client's X-Request-ID when valid; anything else is ignored (never echoed)."""
    if raw is None or len(raw) > MAX_LEN or not _VALID.match(raw):
        return None
    return raw.decode("ascii")


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = next((v for k, v in scope["headers"] if k == HEADER), None)
        theirs = client_id(raw)
        ours = new_request_id()
        public = theirs or ours
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = ours
        state["client_request_id"] = theirs
        state["public_request_id"] = public
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                if not any(k.lower() == HEADER for k, _ in headers):
                    headers.append((HEADER, public.encode("ascii")))
                    message["headers"] = headers
            await send(message)

        token = CURRENT.set(public)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            CURRENT.reset(token)
            endpoint = ENDPOINTS.get(scope.get("path", ""))
            if endpoint is not None and not state.get("observed") and status:
                hooks.observe_unbound(endpoint, status, state.get("error_code"))


_installed = False


def install_log_context() -> None:
    """Every log record gets ``request_id``: the id of the request being handled, or ``-``."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = CURRENT.get()
        return record

    logging.setLogRecordFactory(factory)
