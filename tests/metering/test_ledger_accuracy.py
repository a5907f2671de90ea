"""10,000 mixed requests through a real gateway: the ledger equals the engines' own usage.

Three tenants with their own prices send plain and streamed requests, streams they cancel
mid-way (while the engine stalls after three tokens, ``sim_stall_after``, so the cancellation
lands at a known point however loaded the machine is), and requests the engine fails
(``sim_fail_after``). Each simulator replica writes
what it generated per gateway request id to a usage log; per tenant, the ledger must equal
that usage times the tenant's prices — charging what reached the client: a failed plain
request pays nothing, a failed or cancelled stream pays for what was streamed.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
from sqlalchemy import select

from lingyun.metering.pricing import UnitPrices
from lingyun.store.ledger import LedgerEntry
from tests.metering.test_billing_server import _db_query
from tests.support.server import LingyunServer

D = Decimal
TOTAL = 10_000
CONCURRENCY = 64
# per tenant: (input, output) per 1M tokens on sim, and on sim-slow
PRICES = {
    "alpha": {"sim": ("1.5", "6"), "sim-slow": ("3", "12")},
    "beta": {"sim": ("0.8", "2"), "sim-slow": ("1", "4.5")},
    "gamma": {"sim": ("4", "16"), "sim-slow": ("0.3", "0.6")},
}
KINDS = [("plain", 60), ("stream", 20), ("cancel", 10), ("fail-plain", 5), ("fail-stream", 5)]


@dataclass
class Sent:
    request_id: str
    tenant: str
    model: str
    kind: str
    status: int


def _plan(seed: int = 7) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    kinds = [k for k, share in KINDS for _ in range(share)]
    tenants = list(PRICES)
    return [(tenants[i % 3], rng.choice(kinds)) for i in range(TOTAL)]


async def _one(
    session: aiohttp.ClientSession, base: str, key: str, tenant: str, kind: str, rng: random.Random
) -> Sent:
    model = "sim-slow" if kind == "cancel" else "sim"
    words = " ".join(
        rng.choice(["云", "token", "ledger", "模型", "price"]) for _ in range(rng.randint(1, 40))
    )
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": words}],
        "max_tokens": rng.randint(1, 24) if kind != "cancel" else 40,
    }
    if kind in ("stream", "cancel", "fail-stream"):
        body["stream"] = True
        body["stream_options"] = {"include_usage": rng.random() < 0.5}
    if kind == "cancel":
        body["sim_stall_after"] = 3
    if kind.startswith("fail"):
        body["max_tokens"] = 20
        body["sim_fail_after"] = 3
    headers = {"authorization": f"Bearer {key}"}
    async with session.post(f"{base}/v1/chat/completions", json=body, headers=headers) as resp:
        rid, status = resp.headers["x-request-id"], resp.status
        if kind == "cancel":
            seen = 0
            async for line in resp.content:
                if (
                    line.startswith(b"data: {")
                    and b'"content":"' in line
                    and b'"content":""' not in line
                ):
                    seen += 1
                    if seen == 3:
                        resp.close()  # the client goes away mid-stream
                        break
        else:
            await resp.read()
    return Sent(rid, tenant, model, kind, status)


async def _drive(server: LingyunServer, keys: dict[str, str]) -> list[Sent]:
    rng = random.Random(11)
    sem = asyncio.Semaphore(CONCURRENCY)
    conn = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=120)) as s:

        async def guarded(tenant: str, kind: str) -> Sent:
            async with sem:
                return await _one(s, server.base_url, keys[tenant], tenant, kind, rng)

        return await asyncio.gather(*(guarded(t, k) for t, k in _plan()))


def _wait_logged(paths: list[Path], ids: set[str], deadline_s: float = 120.0) -> None:
    """Until every id is in the engines' logs (or the deadline: the asserts then say which)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        # (a line still being written has no newline yet: only whole lines count)
        logged = {
            json.loads(line)["request_id"]
            for path in paths
            if path.exists()
            for line in path.read_text().split("\n")[:-1]
        }
        if ids <= logged:
            return
        time.sleep(0.2)


def _engine_usage(paths: list[Path]) -> dict[str, dict[str, object]]:
    usage: dict[str, dict[str, object]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            record = json.loads(line)
            assert record["request_id"] not in usage, "an engine served one request twice"
            usage[record["request_id"]] = record
    return usage


def test_ten_thousand_mixed_requests(tmp_path: Path, fresh_database_url: str) -> None:
    logs = [tmp_path / "sim.jsonl", tmp_path / "sim-slow.jsonl"]
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_database_url,
        models=[
            {
                "name": "sim",
                "engine": "simulator",
                "replicas": 2,
                "args": {"usage_log": str(logs[0])},
            },
            {
                "name": "sim-slow",
                "engine": "simulator",
                "args": {"itl_ms": 150, "usage_log": str(logs[1])},
            },
        ],
    )
    keys = {tenant: server.create_key(tenant) for tenant in PRICES}
    for tenant, models in PRICES.items():
        server.cli("topup", "--tenant", tenant, "--amount", "1000")
        for model, (inp, out) in models.items():
            server.cli("prices", "set", model, "--input", inp, "--output", out, "--tenant", tenant)
    server.cli("prices", "set", "sim", "--input", "100", "--output", "100")  # list price: unused
    server.start()
    try:
        sent = asyncio.run(_drive(server, keys))
        # An engine logs a cancelled stream when it notices its caller left, which on a busy
        # machine can come after the client is done: wait for that state before stopping
        # (stopping kills replicas, and with them what they had not yet written).
        _wait_logged(logs, {s.request_id for s in sent})
    finally:
        server.stop()  # drains every settlement before it exits

    assert len(sent) == TOTAL and len({s.request_id for s in sent}) == TOTAL
    engine = _engine_usage(logs)
    ledger = {
        str(k): (int(p), int(c), D(str(a)))  # type: ignore[call-overload]
        for k, p, c, a in _db_query(
            fresh_database_url,
            select(
                LedgerEntry.entry_key,
                LedgerEntry.prompt_tokens,
                LedgerEntry.completion_tokens,
                LedgerEntry.amount,
            ).where(LedgerEntry.kind == "usage"),
        )
    }
    # every request was answered as its kind expects, reached an engine, and has exactly
    # one ledger entry
    unexpected = [s for s in sent if s.status != (502 if s.kind == "fail-plain" else 200)]
    assert not unexpected, unexpected[:5]
    unlogged = [s for s in sent if s.request_id not in engine]
    assert not unlogged, unlogged[:5]
    assert set(engine) == {s.request_id for s in sent} == set(ledger)

    expected: dict[str, Decimal] = defaultdict(Decimal)
    charged: dict[str, Decimal] = defaultdict(Decimal)
    mismatches = []
    for s in sent:
        inp, out = PRICES[s.tenant][s.model]
        prices = UnitPrices("CNY", D(inp), D(inp), D(out), D(out))
        e = engine[s.request_id]
        if s.kind == "fail-plain":
            assert e["outcome"] == "failed"
            want = D(0)  # nothing reached the client
        else:
            want = prices.cost(int(e["prompt_tokens"]), 0, int(e["completion_tokens"]))  # type: ignore[call-overload]
        expected[s.tenant] += want
        got = -ledger[s.request_id][2]
        charged[s.tenant] += got
        if got != want:
            mismatches.append((s.kind, e, ledger[s.request_id]))
    assert not mismatches, mismatches[:5]
    for tenant in PRICES:
        assert charged[tenant].quantize(D("0.01")) == expected[tenant].quantize(D("0.01"))
        assert charged[tenant] == expected[tenant]
    kinds = {s.kind for s in sent}
    assert kinds == {k for k, _ in KINDS}
    # the tenants' own reports agree with the ledger
    for tenant in PRICES:
        invoice = server.cli_json("invoice", "--tenant", tenant, "--month", _month())
        assert D(invoice["subtotal"]) == charged[tenant]


def _month() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m")
