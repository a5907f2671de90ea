"""The request log: one JSON line per finished request on the ``lingyun.requests`` logger.

Fields (names stable; add, never rename): ``ts``, ``request_id`` (the gateway's own id, the
ledger's key), ``client_request_id`` (the client's ``X-Request-ID``, when it sent a valid one),
``tenant_id``, ``project_id``, ``key_id``, ``model`` (as the client named it), ``deployment``,
``replica``, ``provider``, ``endpoint``, ``stream``, ``status``, ``error_code``,
``prompt_tokens``, ``completion_tokens``, ``cached_tokens``, ``usage_source`` (``engine``,
``estimated`` or ``none``), ``end`` (see ``hooks.py``), ``ttft_ms``, ``queue_ms``,
``duration_ms``. Never prompt or completion text: the line is built from counts and names
only, not from the request body.

Where it goes (setting ``request_log``): ``stderr`` (default), ``off``, or a file path
(relative paths are under the data dir). The logger does not propagate, so the lines are bare
JSON, easy to ship to Loki or Elasticsearch.

Cost: while the logger has only its own handler (``log_lines.py``: lines batched, written on
a short timer), a line goes straight to that handler as text, without a ``LogRecord``; a
handler or filter added to the logger (``logging.config``, a test) gets records as usual.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lingyun.observability.log_lines import FileLines, Lines

if TYPE_CHECKING:
    from lingyun.gateway.context import RequestContext

LOGGER_NAME = "lingyun.requests"
# json.dumps(..., ensure_ascii=False) builds an encoder per call; this one is built once.
_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode


class RequestLog:
    def __init__(self, logger: logging.Logger, handler: Lines | FileLines | None = None) -> None:
        self.logger = logger
        self.handler = handler

    @classmethod
    def open(cls, where: str, data_dir: Path) -> RequestLog | None:
        """The log for setting ``request_log``; None when it is ``off``."""
        if where == "off":
            return None
        logger = logging.getLogger(LOGGER_NAME)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        for old in list(logger.handlers):  # a second app in one process replaces the first
            logger.removeHandler(old)
            old.close()
        handler: Lines | FileLines
        if where == "stderr":
            handler = Lines(sys.stderr)
        else:
            path = Path(where)
            path = path if path.is_absolute() else data_dir / path
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = FileLines(str(path), encoding="utf-8")
        logger.addHandler(handler)
        return cls(logger, handler)

    def write(self, ctx: RequestContext, end: str, provider: str) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        text = _encode(line(ctx, end, provider))
        handler, handlers = self.handler, logger.handlers
        if (
            handler is not None
            and len(handlers) == 1
            and handlers[0] is handler
            and not logger.filters
            and not handler.filters
            and handler.level <= logging.INFO
        ):
            handler.line(text)  # what handle() would reach, less the record
            return
        # makeRecord + handle: what logger.info does, less its caller lookup (a frame walk).
        logger.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 0, text, (), None))

    def flush(self) -> None:
        """Write what is batched (the lifespan's stop)."""
        for handler in self.logger.handlers:
            handler.flush()


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def line(ctx: RequestContext, end: str, provider: str) -> dict[str, Any]:
    key, usage, dep = ctx.key, ctx.usage, ctx.deployment
    first = ctx.first_byte_at
    source = "engine" if usage.reported else ("estimated" if ctx.replica is not None else "none")
    return {
        "ts": round(time.time(), 3),
        "request_id": ctx.request_id,
        "client_request_id": ctx.client_request_id,
        "tenant_id": key.tenant_id if key else None,
        "project_id": key.project_id if key else None,
        "key_id": key.key_id if key else None,
        "model": ctx.model[:128],
        "deployment": dep.name if dep else None,
        "replica": ctx.replica.replica_id if ctx.replica else None,
        "provider": provider or None,
        "endpoint": ctx.endpoint,
        "stream": ctx.stream,
        "status": ctx.status_code,
        "error_code": ctx.error_code,
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cached_tokens": usage.cached_tokens,
        "usage_source": source,
        "end": end,
        "ttft_ms": _ms(first - ctx.started) if first is not None and ctx.stream else None,
        "queue_ms": _ms(ctx.marks.get("queue_s")),
        "duration_ms": _ms(time.perf_counter() - ctx.started),
    }
