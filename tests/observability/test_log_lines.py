"""The request log's batched handlers: lines reach the stream on a short timer, none is lost."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from lingyun.config import DeploymentConfig
from lingyun.gateway.context import RequestContext, Usage
from lingyun.observability import log_lines
from lingyun.observability.log_lines import Lines
from lingyun.observability.request_log import LOGGER_NAME, RequestLog, line
from lingyun.serving.replica import Replica
from lingyun.tenancy.service import KeyInfo


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    yield io.StringIO()
    logger = logging.getLogger(LOGGER_NAME)
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


def _ctx(n: int) -> RequestContext:
    ctx = RequestContext(
        endpoint="chat.completions", body={}, stream=False, client_wants_usage=False,
        max_output_tokens=16,
    )  # fmt: skip
    ctx.request_id = f"req_{n}"
    ctx.key = KeyInfo("key_1", "ten_1", "acme", "prj_1", "default", None)
    ctx.model, ctx.deployment = "sim-é", DeploymentConfig(name="sim", engine="simulator")
    ctx.replica = Replica("sim", "sim-0", "http://127.0.0.1:1/v1", "sim")
    ctx.usage = Usage(prompt_tokens=3, completion_tokens=5, reported=True)
    return ctx


def _stderr_log(stream: io.StringIO) -> RequestLog:
    log = RequestLog.open("stderr", Path("."))
    assert log is not None and log.handler is not None
    log.handler.setStream(stream)
    return log


class _Watched(io.StringIO):
    """A stream that tells when it was written to."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = asyncio.Event()

    def write(self, s: str) -> int:
        self.writes += 1
        self.written.set()
        return super().write(s)


def test_lines_in_a_loop_are_written_together_on_the_timer() -> None:
    async def main() -> _Watched:
        stream = _Watched()
        log = _stderr_log(stream)
        for n in range(3):
            log.write(_ctx(n), "completed", "simulator")
        assert stream.getvalue() == ""  # batched: no write per request
        await asyncio.wait_for(stream.written.wait(), 10)
        assert stream.writes == 1  # one write for the three lines
        return stream

    stream = asyncio.run(main())
    rows = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [r["request_id"] for r in rows] == ["req_0", "req_1", "req_2"]
    assert rows[0]["model"] == "sim-é" and rows[0]["completion_tokens"] == 5
    assert '"model": "sim-é"' in stream.getvalue()  # as json.dumps(ensure_ascii=False) wrote


def test_many_lines_are_written_without_waiting_for_the_timer(stream: io.StringIO) -> None:
    log = _stderr_log(stream)

    async def main() -> None:
        for n in range(log_lines.MAX_PENDING):
            log.write(_ctx(n), "completed", "")
        assert stream.getvalue().count("\n") == log_lines.MAX_PENDING

    asyncio.run(main())


def test_outside_a_loop_a_line_is_written_at_once(stream: io.StringIO) -> None:
    log = _stderr_log(stream)
    log.write(_ctx(1), "completed", "")
    assert json.loads(stream.getvalue())["request_id"] == "req_1"


def test_close_and_flush_write_what_is_pending(stream: io.StringIO, tmp_path: Path) -> None:
    handler = Lines(stream)

    async def main() -> None:
        handler.line('{"a": 1}')
        handler.close()  # logging.shutdown at exit, or a second app replacing the first
        assert stream.getvalue() == '{"a": 1}\n'
        log = RequestLog.open("requests.jsonl", tmp_path)
        assert log is not None
        log.write(_ctx(7), "completed", "")
        log.flush()  # the lifespan's stop
        assert json.loads((tmp_path / "requests.jsonl").read_text())["request_id"] == "req_7"

    asyncio.run(main())


def test_a_handler_added_to_the_logger_gets_records_and_ours_still_the_line(
    stream: io.StringIO,
) -> None:
    log = _stderr_log(stream)
    got: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    logging.getLogger(LOGGER_NAME).addHandler(Collect())
    ctx = _ctx(2)
    log.write(ctx, "completed", "simulator")
    (ours,) = stream.getvalue().splitlines()
    assert got == [ours]
    expected = line(ctx, "completed", "simulator")
    row = json.loads(ours)
    assert row.keys() == expected.keys()
    assert {k: v for k, v in row.items() if k not in ("ts", "duration_ms")} == {
        k: v for k, v in expected.items() if k not in ("ts", "duration_ms")
    }
