"""``/admin/v1`` billing: prices, top-ups (idempotent), balances, invoices equal to the
CLI's, free quotas; who may read and who may change."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.console import ROOT, Console
from tests.support.tenancy import login, ok

pytestmark = pytest.mark.postgres


def test_prices_set_by_platform_admin_only(console: Console) -> None:
    base = console.server.base_url
    with login(base, ROOT) as root, login(base, "tenant_admin@acme.example") as admin:
        body = {"input_per_m": "2", "output_per_m": "8", "cached_input_per_m": "0.5"}
        price = ok(root.put("/prices/sim", json=body))
        assert (price["input_per_m"], price["cached_input_per_m"]) == ("2", "0.5")
        assert admin.put("/prices/sim", json=body).status_code == 403
        own = {**body, "tenant_id": console.tenants["globex"], "input_per_m": "1"}
        ok(root.put("/prices/sim", json=own))
        # acme's admin sees list prices, not globex's negotiated one.
        seen = ok(admin.get("/prices"))["data"]
        assert [p["tenant_id"] for p in seen if p["model"] == "sim"] == [None]
        assert len([p for p in ok(root.get("/prices"))["data"] if p["model"] == "sim"]) == 2
        bad = {**body, "input_per_m": "0.0000000001"}  # past 9 decimal places
        assert root.put("/prices/sim", json=bad).status_code == 400


def test_topups_are_idempotent_and_only_for_platform_admins(console: Console) -> None:
    base, acme = console.server.base_url, console.tenants["acme"]
    with login(base, ROOT) as root, login(base, "tenant_admin@acme.example") as admin:
        before = ok(root.get(f"/tenants/{acme}/balance"))["balance"]
        body = {"amount": "25.5", "idempotency_key": "order-1"}
        first = ok(root.post(f"/tenants/{acme}/topups", json=body), 201)
        again = ok(root.post(f"/tenants/{acme}/topups", json=body), 201)
        assert first["created"] and not again["created"]
        assert first["entry_key"] == again["entry_key"]
        after = ok(admin.get(f"/tenants/{acme}/balance"))
        assert Decimal(after["balance"]) - Decimal(before) == Decimal("25.5")
        assert admin.post(f"/tenants/{acme}/topups", json={"amount": "1"}).status_code == 403
        assert root.post(f"/tenants/{acme}/topups", json={"amount": "-1"}).status_code == 400
        assert root.post(f"/tenants/{acme}/topups", json={"amount": "0"}).status_code == 400
        # Another tenant's balance is not there for acme's admin.
        assert admin.get(f"/tenants/{console.tenants['globex']}/balance").status_code == 404


def test_invoice_equals_lingyun_invoice(console: Console, tmp_path: Path) -> None:
    server, acme = console.server, console.tenants["acme"]
    with login(server.base_url, ROOT) as root:
        ok(root.put("/prices/sim", json={"input_per_m": "3", "output_per_m": "9"}))
        ok(root.post(f"/tenants/{acme}/topups", json={"amount": "50"}), 201)
        client = server.client(server.create_key("acme"), max_retries=0)
        for i in range(3):
            client.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": f"x{i}"}], max_tokens=4
            )
        month = time.strftime("%Y-%m", time.gmtime())
        deadline = time.monotonic() + 60
        while True:
            inv = ok(root.get(f"/tenants/{acme}/invoices/{month}"))
            if sum(line["requests"] for line in inv["lines"]) >= 3:
                break
            assert time.monotonic() < deadline, inv
            time.sleep(0.2)
        server.cli("invoice", "--tenant", "acme", "--month", month, "--out", str(tmp_path))
        cli_csv = (tmp_path / f"invoice-acme-{month}.csv").read_bytes().decode()
        cli_json = server.cli_json("invoice", "--tenant", "acme", "--month", month)
        inv = ok(root.get(f"/tenants/{acme}/invoices/{month}"))
        inv.pop("generated_at"), cli_json.pop("generated_at")
        assert inv == cli_json
        csv = root.get(f"/tenants/{acme}/invoices/{month}", params={"format": "csv"})
        assert csv.status_code == 200 and csv.text == cli_csv
        assert root.get(f"/tenants/{acme}/invoices/2026-13").status_code == 400
    with login(server.base_url, "viewer@acme.example") as viewer:
        assert viewer.get(f"/tenants/{acme}/invoices/{month}").status_code == 200
        globex = console.tenants["globex"]
        assert viewer.get(f"/tenants/{globex}/invoices/{month}").status_code == 404


def test_free_quota_granted_and_listed(console: Console) -> None:
    base, globex = console.server.base_url, console.tenants["globex"]
    with login(base, ROOT) as root, login(base, "member@acme.example") as member:
        q = ok(root.post(f"/tenants/{globex}/free-quotas", json={"model": "sim", "tokens": 1000}),
               201)  # fmt: skip
        assert q["remaining_tokens"] == 1000
        assert [x["id"] for x in ok(root.get(f"/tenants/{globex}/free-quotas"))["data"]] == [
            q["id"]
        ]
        acme = console.tenants["acme"]
        denied = member.post(f"/tenants/{acme}/free-quotas", json={"model": "sim", "tokens": 1})
        assert denied.status_code == 403
        assert member.get(f"/tenants/{globex}/free-quotas").status_code == 404
