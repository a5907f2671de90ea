"""The server's lifecycle: reverse-order, exception-safe stops and supervised loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import pytest

from lingyun.lifecycle import Lifecycle, supervised

Step = Callable[[], Awaitable[None]]

pytestmark = pytest.mark.anyio


def part(
    name: str, log: list[str], *, fail_start: bool = False, fail_stop: bool = False
) -> tuple[Step, Step]:
    async def start() -> None:
        log.append(f"start {name}")
        if fail_start:
            raise RuntimeError(f"{name} would not start")

    async def stop() -> None:
        log.append(f"stop {name}")
        if fail_stop:
            raise RuntimeError(f"{name} would not stop")

    return start, stop


async def test_parts_stop_in_reverse_and_a_failed_stop_does_not_skip_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    async with Lifecycle() as life:
        await life.start("db", *part("db", log))
        await life.start("journal", *part("journal", log, fail_stop=True))
        await life.start("relay", None, part("relay", log)[1])
    assert log == ["start db", "start journal", "stop relay", "stop journal", "stop db"]
    assert "stopping journal failed" in caplog.text


async def test_a_failed_start_stops_what_had_started_and_propagates() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError, match="supervisor would not start"):
        async with Lifecycle() as life:
            await life.start("db", *part("db", log))
            await life.start("supervisor", *part("supervisor", log, fail_start=True))
            await life.start("never", *part("never", log))
    assert log == ["start db", "start supervisor", "stop db"]


async def test_a_failing_step_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    beats: list[int] = []
    three = asyncio.Event()

    async def step() -> None:
        beats.append(len(beats))
        if len(beats) == 3:
            three.set()
        if len(beats) == 1:
            raise ValueError("the first beat fails")

    async with Lifecycle() as life:
        life.every("refresher", 0.001, step)
        await asyncio.wait_for(three.wait(), 30)
    assert "refresher failed" in caplog.text
    assert [t.get_name() for t in asyncio.all_tasks()].count("refresher") == 0  # cancelled


async def test_a_crashed_loop_restarts_and_shutdown_cancels_it(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lingyun.lifecycle.RESTART_BACKOFF_S", (0.001, 0.002))
    runs: list[int] = []
    second = asyncio.Event()
    cancelled = asyncio.Event()

    async def run() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise RuntimeError("first life crashes")
        second.set()
        try:
            await asyncio.Event().wait()  # serves until shutdown
        finally:
            cancelled.set()

    caplog.set_level(logging.ERROR)
    task = supervised("scraper", run)
    await asyncio.wait_for(second.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert cancelled.is_set()
    assert len(runs) == 2
    assert "scraper crashed; restarting" in caplog.text
