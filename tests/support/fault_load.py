"""Steady load for fault tests: a few closed-loop clients (the official ``openai`` client, no
retries) that record every answer, so a test can compare what clients got with the ledger.

A refused request is retried after a short pause (a polite client honouring Retry-After,
scaled down), so an outage costs a bounded number of requests rather than a busy loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import openai

MSG = [{"role": "user", "content": "keep going"}]


@dataclass(frozen=True)
class Answer:
    started: float  # time.monotonic() when sent
    ended: float  # and when its answer came
    status: int
    request_id: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    code: str | None = None
    error_type: str | None = None
    retry_after: str | None = None


@dataclass
class Load:
    answers: list[Answer] = field(default_factory=list)

    def served(self, since: float = float("-inf")) -> list[Answer]:
        return [a for a in self.answers if a.status == 200 and a.started >= since]

    def refused(self, since: float = float("-inf")) -> list[Answer]:
        return [a for a in self.answers if a.status != 200 and a.started >= since]

    def between(self, start: float, end: float) -> list[Answer]:
        """Answers to requests sent at or after ``start`` that came back before ``end``."""
        return [a for a in self.answers if a.started >= start and a.ended < end]


async def one(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> Answer:
    started = time.monotonic()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=model,
            messages=MSG,  # type: ignore[arg-type]
            max_tokens=max_tokens,
        )
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        return Answer(
            started,
            time.monotonic(),
            exc.status_code,
            exc.response.headers.get("x-request-id"),
            code=exc.code,
            error_type=body.get("type"),
            retry_after=exc.response.headers.get("retry-after"),
        )
    except openai.APIConnectionError:
        return Answer(started, time.monotonic(), 0, None, code="connection_error")
    answer = raw.parse()
    assert answer.usage is not None
    return Answer(
        started,
        time.monotonic(),
        raw.status_code,
        raw.headers.get("x-request-id"),
        prompt_tokens=answer.usage.prompt_tokens,
        completion_tokens=answer.usage.completion_tokens,
    )


async def steady(
    client: openai.AsyncOpenAI,
    model: str,
    load: Load,
    stop: asyncio.Event,
    *,
    clients: int = 4,
    max_tokens: int = 4,
    pause_after_refusal_s: float = 0.1,
) -> None:
    """``clients`` loops sending one request after another until ``stop`` is set."""

    async def loop() -> None:
        while not stop.is_set():
            answer = await one(client, model, max_tokens)
            load.answers.append(answer)
            if answer.status != 200:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause_after_refusal_s)

    await asyncio.gather(*(loop() for _ in range(clients)))


async def until(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after a generous deadline."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)
