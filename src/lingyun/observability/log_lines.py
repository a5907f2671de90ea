"""Handlers of the request log: pre-encoded JSON lines, written in batches.

One ``write`` + ``flush`` per request was a system call per request on the serve loop. Here a
line joins a list; the first line after a write schedules one on the running event loop
``FLUSH_S`` later (an idle gateway schedules nothing), and ``MAX_PENDING`` lines write at
once. A line is therefore on disk at most ``FLUSH_S`` after its request ended; a crash loses
at most that window of lines. ``flush`` and ``close`` (the lifespan's stop, interpreter exit
through ``logging.shutdown``) write what is pending. Outside an event loop a line is written
at once.

The handler lock guards the pending list: lines may come from the logging module's own path
(``emit``, any thread) as well as from ``RequestLog``'s direct one (``line``, the loop).
"""

from __future__ import annotations

import asyncio
import logging
from typing import IO, Any

FLUSH_S = 0.05
MAX_PENDING = 256


class Batched:
    """The batching shared by the stream and file handlers (a mixin over logging.Handler)."""

    stream: Any
    lock: Any
    _pending: list[str]
    _scheduled: asyncio.AbstractEventLoop | None  # the loop whose timer will write them

    def _init_batch(self) -> None:
        self._pending = []
        self._scheduled = None

    def line(self, text: str) -> None:
        with self.lock:
            pending = self._pending
            pending.append(text)
            if len(pending) >= MAX_PENDING:
                self._write_pending()
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._write_pending()
                return
            if self._scheduled is loop:
                return
            self._scheduled = loop  # a loop that closed before its timer ran is replaced
        loop.call_later(FLUSH_S, self.flush)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.line(str(record.msg))
        except Exception:
            self.handleError(record)  # type: ignore[attr-defined]

    def flush(self) -> None:
        with self.lock:
            self._scheduled = None
            if self._pending:
                self._write_pending()

    def _stream(self) -> IO[str]:
        stream: IO[str] | None = self.stream
        if stream is None:
            raise ValueError("the request log's stream is closed")
        return stream

    def _write_pending(self) -> None:
        data = "\n".join(self._pending) + "\n"
        self._pending.clear()
        try:
            stream = self._stream()
            stream.write(data)
            stream.flush()
        except Exception:  # as logging does: report on stderr, never raise into a request
            self.handleError(logging.makeLogRecord({"msg": data}))  # type: ignore[attr-defined]


class Lines(Batched, logging.StreamHandler):  # type: ignore[type-arg]
    """Lines to a stream (stderr): already JSON, no formatting to do."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(stream)
        self._init_batch()

    def close(self) -> None:
        self.flush()
        super().close()


class FileLines(Batched, logging.FileHandler):
    """Lines to a file, reopened after a close (uvicorn's logging setup closes every handler
    once, as FileHandler itself reopens on emit)."""

    def __init__(self, path: str, encoding: str) -> None:
        super().__init__(path, encoding=encoding)
        self._init_batch()

    def _stream(self) -> IO[str]:
        if self.stream is None:
            self.stream = self._open()
        stream: IO[str] = self.stream
        return stream

    def close(self) -> None:
        self.flush()
        super().close()
