"""The flows that touch money and tenancy, run by the SQLite module and once on PostgreSQL:
a key narrowed to one model (created, used with ``openai``, refused elsewhere, revoked) and
an invoice downloaded from the console equal to ``lingyun invoice``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.support.browser import Browse, create_key, until
from tests.support.server import LingyunServer


def _not_found(client: openai.OpenAI, model: str) -> tuple[int, object]:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=4
        )
    body = err.value.body
    assert isinstance(body, dict), body
    # Alike but for the model's name and the request id each error carries.
    return err.value.status_code, {**body, "message": body["message"].replace(model, "M"),
                                   "request_id": None}  # fmt: skip


def key_flow(browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer) -> None:
    page = admin.new_page()
    secret = create_key(page, acme, "from-the-console", models=["sim"])
    browse.shot(page, "keys-created-en")
    client = server.client(secret, max_retries=0)
    reply = client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "hello"}], max_tokens=8
    )
    assert reply.choices[0].message.content
    # Off its allow-list, a model answers exactly as one never granted (or never deployed).
    off_list, unknown = _not_found(client, "sim-slow"), _not_found(client, "no-such-model")
    assert off_list == unknown, (off_list, unknown)
    assert [m.id for m in client.models.list()] == ["sim"]
    page.goto(f"/console/keys?tenant={acme}")
    assert secret not in page.content()  # shown once, never again
    row = page.locator("tr", has_text="from-the-console")
    expect(row.locator("[data-models]")).to_have_text("sim")
    page.get_by_role("button", name="Revoke from-the-console").click()
    expect(row).to_contain_text("revoked")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": "hello"}], max_tokens=8
        )


def invoice_flow(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer, out: Path
) -> None:
    month = time.strftime("%Y-%m", time.gmtime())

    def requests() -> int:
        inv = server.cli_json("invoice", "--tenant", "acme", "--month", month)
        return sum(int(line["requests"]) for line in inv["lines"])

    before = requests()
    server.cli("prices", "set", "sim", "--input", "2", "--output", "8")
    page = admin.new_page()
    page.goto("/console/ops/tenants")
    page.get_by_label("Amount acme").fill("100")
    page.get_by_role("button", name="Top up acme").click()
    expect(page.locator("tr[data-tenant=acme] [data-balance]")).to_have_text("100.00")
    client = server.client(create_key(page, acme, "billing"), max_retries=0)
    for i in range(5):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": f"bill me {i}"}], max_tokens=8
        )
    until(lambda: requests() >= before + 5, what="five more billed requests in the ledger")
    server.cli("invoice", "--tenant", "acme", "--month", month, "--out", str(out))
    cli_json = json.loads((out / f"invoice-acme-{month}.json").read_text())
    cli_csv = (out / f"invoice-acme-{month}.csv").read_text()
    page.goto(f"/console/usage?tenant={acme}&month={month}")
    browse.shot(page, "usage-en")
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download JSON").click()
    web_json = json.loads(Path(dl.value.path()).read_text())
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download CSV").click()
    web_csv = Path(dl.value.path()).read_text()
    cli_json.pop("generated_at")
    web_json.pop("generated_at")
    assert web_json == cli_json
    assert web_csv == cli_csv and "sim" in web_csv
    expect(page.locator("[data-invoice-total]")).to_have_text(cli_json["total"])
    expect(page.locator("table.log tbody tr").first).to_contain_text("sim")
