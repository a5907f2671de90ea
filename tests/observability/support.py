"""Helpers for observability tests: read /metrics, wait on a state, provision before start."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from lingyun.store.db import Database
from tests.support.server import LingyunServer

T = TypeVar("T")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base_url: str) -> Samples:
    resp = httpx.get(f"{base_url}/metrics", timeout=10)
    resp.raise_for_status()
    out: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = float(s.value)
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over every series whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def wait_for(probe: Callable[[], T | None], timeout_s: float = 30.0, what: str = "") -> T:
    """Poll ``probe`` until it answers something truthy (a state, not a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or probe}: last {last!r}")


def migrate(server: LingyunServer) -> None:
    """Create the schema before the server starts, so keys and limits exist at its start."""

    async def main() -> None:
        db = Database(server.database_url)
        try:
            await db.migrate()
        finally:
            await db.close()

    asyncio.run(main())
