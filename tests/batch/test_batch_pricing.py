"""Batch API lines are charged at the model's batch multiplier and invoiced apart."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.batch.conftest import chat_line, jsonl, wait_batch
from tests.support.server import LingyunServer

PER_M = Decimal(1_000_000)


def _cost(line: dict[str, Any], inp: Decimal, out: Decimal) -> Decimal:
    return (line["prompt_tokens"] * inp + line["completion_tokens"] * out) / PER_M


def test_batch_lines_pay_the_multiplier_to_the_cent(
    tmp_path: Path, fresh_database_url: str
) -> None:
    server = LingyunServer(
        data_dir=tmp_path / "lingyun",
        database_url=fresh_database_url,
        models=[{"name": "sim", "engine": "simulator"}],
    )
    key = server.create_key("frugal")
    server.cli("prices", "set", "sim", "--input", "2", "--output", "8", "--batch-multiplier", "0.5")
    server.cli("topup", "--tenant", "frugal", "--amount", "10")
    server.start()
    try:
        client = server.client(key, max_retries=0)
        for _ in range(3):
            client.chat.completions.create(
                model="sim",
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=10,
            )
        upload = client.files.create(
            file=(
                "in.jsonl",
                io.BytesIO(jsonl([chat_line(f"l{i}", max_tokens=10) for i in range(4)])),
            ),
            purpose="batch",
        )
        batch = client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        assert wait_batch(client, batch.id).status == "completed"
        month = datetime.now(UTC).strftime("%Y-%m")
        deadline = time.monotonic() + 60
        while True:  # settlements land just after the lines finish: wait for all seven
            invoice = server.cli_json("invoice", "--tenant", "frugal", "--month", month)
            if sum(line["requests"] for line in invoice["lines"]) == 7:
                break
            assert time.monotonic() < deadline, invoice
            time.sleep(0.2)
    finally:
        server.stop()
    lines = {line["lane"]: line for line in invoice["lines"]}
    assert set(lines) == {"interactive", "batch"}
    interactive, batched = lines["interactive"], lines["batch"]
    assert (interactive["requests"], batched["requests"]) == (3, 4)
    assert Decimal(interactive["amount"]) == _cost(interactive, Decimal(2), Decimal(8))
    assert Decimal(batched["amount"]) == _cost(batched, Decimal(1), Decimal(4))  # half price
    # the same request costs half as a batch line, to the cent and exactly
    per_sync = Decimal(interactive["amount"]) / 3
    per_batch = Decimal(batched["amount"]) / 4
    assert per_batch * 2 == per_sync
    assert Decimal(invoice["subtotal"]) == Decimal(interactive["amount"]) + Decimal(
        batched["amount"]
    )
