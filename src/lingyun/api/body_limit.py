"""A size limit on every request body, on every route, before any handler reads it.

FastAPI and Starlette read a body whole (JSON models, forms) with no bound, so a route that
forgot a limit would buffer whatever a client streams. This pure-ASGI middleware closes that
for all routes at once: a declared ``Content-Length`` over the route's limit is answered 413
without reading a byte; a body sent without one (chunked) is counted as it arrives and cut
off with the same 413 at the first byte over. The limits: uploads to ``/v1/files`` get the
Batch API's file limit (plus multipart framing), the control plane (``/admin``, ``/console``)
``admin_max_body_bytes``, everything else ``max_body_bytes`` (the pipeline keeps its own check
for callers that bypass HTTP).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lingyun.errors import RequestTooLargeError
from lingyun.protocol.errors import error_response

# Multipart framing around an uploaded file.
FRAMING_BYTES = 64 * 1024


@dataclass(frozen=True)
class BodyLimits:
    default: int
    by_prefix: Sequence[tuple[str, int]] = ()  # first match wins

    def of(self, path: str) -> int:
        for prefix, limit in self.by_prefix:
            if path.startswith(prefix):
                return limit
        return self.default


def _message(limit: int) -> str:
    return f"Request body is larger than the limit of {limit} bytes."


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.of(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await error_response(RequestTooLargeError(_message(limit)))(scope, receive, send)
            return
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # rendered by the error handler as the same OpenAI 413
                    raise HTTPException(413, _message(limit))
            return message

        await self.app(scope, bounded, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None
