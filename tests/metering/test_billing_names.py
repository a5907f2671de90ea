"""What a request is billed under, through a real server: aliases and the output bound.

Both failed before their fixes: requests to an alias were looked up in the price book by
the alias (so priced at zero, and never refused), and a deployment's output bound sized the
reservation but was not sent upstream, so an engine that wrote more drove the balance below
zero.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
from sqlalchemy import select

from lingyun.store.ledger import LedgerEntry
from tests.metering.test_billing_server import MSG, _db_query
from tests.support.server import LingyunServer


def _entries(url: str) -> list[tuple[str, int, Decimal]]:
    rows = _db_query(
        url,
        select(LedgerEntry.model, LedgerEntry.completion_tokens, LedgerEntry.amount).where(
            LedgerEntry.kind == "usage"
        ),
    )
    return [(str(m), int(c), Decimal(str(a))) for m, c, a in rows]  # type: ignore[call-overload]


def test_an_alias_costs_what_its_model_costs(tmp_path: Path, fresh_database_url: str) -> None:
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_database_url,
        models=[{"name": "simq", "engine": "simulator", "aliases": ["simq-latest"]}],
    )
    key = server.create_key("aliased")
    server.cli("prices", "set", "simq", "--input", "0", "--output", "1000")  # 0.001 a token
    server.cli("topup", "--tenant", "aliased", "--amount", "0.03")  # three 10-token answers
    server.start()
    try:
        client = server.client(key, max_retries=0)
        served = []
        for model in ["simq-latest", "simq", "simq-latest", "simq-latest"]:
            try:
                reply = client.chat.completions.create(model=model, messages=MSG, max_tokens=10)  # type: ignore[arg-type]
                served.append(reply.model)
            except openai.RateLimitError as exc:
                assert exc.code == "insufficient_quota"
                served.append("refused")
    finally:
        server.stop()
    assert served == ["simq", "simq", "simq", "refused"]  # the alias answers as its model
    entries = _entries(fresh_database_url)
    assert [(m, c) for m, c, _ in entries] == [("simq", 10)] * 3
    assert sum(a for _, _, a in entries) == Decimal("-0.03")


def test_the_bound_reserved_is_the_bound_sent_upstream(
    tmp_path: Path, fresh_database_url: str
) -> None:
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_database_url,
        # the engine would write 50 tokens; the deployment bounds answers at 10
        models=[
            {
                "name": "sim",
                "engine": "simulator",
                "args": {"output_tokens": 50, "max_output_tokens": 10},
            }
        ],
    )
    key = server.create_key("bounded")
    server.cli("prices", "set", "sim", "--input", "0", "--output", "1000")
    server.cli("topup", "--tenant", "bounded", "--amount", "0.01")  # exactly one bound's worth
    server.start()
    try:
        reply = server.client(key, max_retries=0).chat.completions.create(
            model="sim",
            messages=MSG,  # type: ignore[arg-type]
        )
        balance = server.cli_json("balance", "--tenant", "bounded")
    finally:
        server.stop()
    assert reply.usage is not None and reply.usage.completion_tokens == 10
    assert reply.choices[0].finish_reason == "length"
    assert Decimal(balance["balance"]) == 0 and Decimal(balance["reserved"]) == 0
    assert _entries(fresh_database_url) == [("sim", 10, Decimal("-0.01"))]


def test_the_usage_report_and_the_invoice_agree_to_the_token(
    tmp_path: Path, fresh_database_url: str
) -> None:
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_database_url,
        models=[{"name": "sim", "engine": "simulator", "args": {"itl_ms": 5}}],
    )
    key = server.create_key("agreeing")
    server.cli("prices", "set", "sim", "--input", "2", "--output", "8")
    server.cli("topup", "--tenant", "agreeing", "--amount", "10")
    server.start()
    try:
        client = server.client(key, max_retries=0)
        for n in (3, 7, 11):
            client.chat.completions.create(model="sim", messages=MSG, max_tokens=n)  # type: ignore[arg-type]
        for _ in client.chat.completions.create(model="sim", messages=MSG, stream=True):  # type: ignore[arg-type]
            pass
        with client.chat.completions.create(
            model="sim",
            messages=MSG,  # type: ignore[arg-type]
            max_tokens=400,
            stream=True,
        ) as cut:
            for i, _ in enumerate(cut):
                if i == 3:
                    break  # the client goes away mid-stream
        with pytest.raises(openai.NotFoundError):  # refused: not a billed request
            client.chat.completions.create(model="no-such-model", messages=MSG)  # type: ignore[arg-type]
        month = datetime.now(UTC).strftime("%Y-%m")

        def billed() -> dict[str, object]:
            invoice: dict[str, object] = server.cli_json(
                "invoice", "--tenant", "agreeing", "--month", month
            )
            return invoice

        deadline = time.monotonic() + 60
        while sum(line["requests"] for line in billed()["lines"]) < 5:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, billed()
            time.sleep(0.2)
        invoice = billed()
        report = httpx.get(
            f"{server.base_url}/v1/usage", headers={"authorization": f"Bearer {key}"}
        ).json()
    finally:
        server.stop()
    fields = ("requests", "prompt_tokens", "completion_tokens", "cached_tokens")
    invoiced = {
        line["model"]: tuple(line[f] for f in fields)
        for line in invoice["lines"]  # type: ignore[attr-defined]
    }
    reported = {row["model"]: tuple(row[f] for f in fields) for row in report["data"]}
    assert invoiced == reported and invoiced["sim"][0] == 5
