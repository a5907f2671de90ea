"""The platform admin's pages in Chromium, over a server with a self-hosted simulator and a
STAND-IN for Alibaba Cloud's DashScope (a local server, not the real service): one tenant's
weight, free-only, limits, budget, grants and free quota; upstream clouds; prices; the
provider mix after real traffic; and a tenant admin failing to reach another tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import openai
import pytest
from playwright.sync_api import BrowserContext, expect

from tests.support.browser import (
    ADMIN_PASSWORD,
    Browse,
    create_key,
    make_tenant,
    sign_in,
    until,
)
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer
from tests.support.standins import STANDIN_KEY, STANDINS, build_app, running

HELLO: Any = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data_dir = tmp_path_factory.mktemp("console-ops")
    with ExitStack() as stack:
        dashscope = stack.enter_context(running(build_app(STANDINS["dashscope"])))
        srv = LingyunServer(
            data_dir=data_dir, database_url=fresh_sqlite(data_dir),
            models=[{"name": "sim", "engine": "simulator", "args": {"ttft_ms": 5}},
                    {"name": "qwen", "engine": "openai-compatible", "provider": "dashscope",
                     "base_url": dashscope + "/compatible-mode/v1", "model": "qwen-plus"}],
            env={"DASHSCOPE_API_KEY": STANDIN_KEY},
        )  # fmt: skip
        srv.start()
        stack.callback(srv.stop)
        yield srv


def _refused(client: openai.OpenAI, model: str) -> bool:
    try:
        client.chat.completions.create(model=model, messages=HELLO, max_tokens=4)
    except openai.NotFoundError:
        return True
    return False


def test_operator_runs_one_tenant(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    page = admin.new_page()
    page.goto("/console/ops/tenants")
    page.get_by_role("link", name="Manage acme").click()
    page.wait_for_url(f"**/console/ops/tenants/{acme}")
    page.get_by_label("Weight").fill("3")
    page.get_by_label("Free only").check()
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("[data-stat=weight]")).to_have_text("3.0")
    expect(page.locator("[data-stat=free-only]")).to_have_text("yes")
    page.get_by_label("Free only").uncheck()
    page.get_by_role("button", name="Save settings").click()
    expect(page.locator("[data-stat=free-only]")).to_have_text("no")
    page.get_by_label("Model").first.select_option("sim")
    page.get_by_label("RPM").fill("600")
    page.get_by_role("button", name="Set limits").click()
    expect(page.locator("tr[data-limit=sim]")).to_contain_text("600")
    page.get_by_label("Monthly budget").fill("50")
    page.get_by_role("button", name="Set budget").click()
    expect(page.locator("[data-budget]")).to_have_text("0.00 / 50.00")
    page.locator("#quota-model").select_option("sim")
    page.get_by_label("Tokens").fill("1000")
    page.get_by_role("button", name="Grant free tokens").click()
    expect(page.locator("tr[data-quota=sim]")).to_contain_text("1000")
    # A grant narrows the tenant to the granted model, at the gateway; revoking widens it.
    with server.client(create_key(admin.new_page(), acme, "ops"), max_retries=0) as client:
        assert client.chat.completions.create(model="qwen", messages=HELLO, max_tokens=4)
        page.locator("#grant-model").select_option("sim")
        page.get_by_role("button", name="Grant model").click()
        expect(page.locator("li[data-grant=sim]")).to_be_visible()
        until(lambda: _refused(client, "qwen"), what="qwen refused once only sim is granted")
        browse.shot(page, "ops-tenant-en")
        page.get_by_role("button", name="Revoke sim").click()
        expect(page.locator("li[data-grant=sim]")).to_have_count(0)
        until(lambda: not _refused(client, "qwen"), what="qwen served again")
    page.goto("/console/ops/audit")  # each change, by whom
    for action in ("tenant.update", "tenant.free_only", "limits.set", "budget.set",
                   "quota.grant", "model_grant.create", "model_grant.delete"):  # fmt: skip
        expect(page.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    # The tenant sees its budget and free quota on its usage page.
    page.goto(f"/console/usage?tenant={acme}")
    expect(page.locator('tr[data-budget="tenant:acme"] [data-limit]')).to_have_text("50.00")
    expect(page.get_by_text("Free quota · sim")).to_be_visible()


def test_clouds_prices_and_provider_mix_after_real_traffic(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    page = admin.new_page()
    page.goto("/console/ops/prices")
    for model, inp, out in (("sim", "2", "8.00"), ("qwen", "4", "12.50")):
        page.get_by_label("Model").select_option(model)
        page.get_by_label("Input / 1M").fill(inp)
        page.get_by_label("Output / 1M").fill(out.removesuffix("0"))
        page.get_by_role("button", name="Set price").click()
        expect(page.locator(f"tr[data-price={model}] [data-output]")).to_have_text(out)
    page.goto("/console/ops/tenants")
    page.get_by_label("Amount acme").fill("100")
    page.get_by_role("button", name="Top up acme").click()
    expect(page.locator("tr[data-tenant=acme] [data-balance]")).to_have_text("100.00")
    with server.client(create_key(admin.new_page(), acme, "ops"), max_retries=0) as client:
        for model in ("sim", "sim", "qwen", "qwen"):
            client.chat.completions.create(model=model, messages=HELLO, max_tokens=4)
    page.goto("/console/ops/clouds")
    dashscope = page.locator("tr[data-cloud=dashscope]")
    expect(dashscope.locator("[data-configured]")).to_have_text("qwen")
    expect(dashscope.locator("[data-env]")).to_have_text("set")
    expect(page.locator("tr[data-cloud=ark] [data-configured]")).to_have_text("not configured")
    expect(page.locator("tr[data-cloud=ark] [data-env]")).to_have_text("not set")

    def mixed() -> bool:
        page.goto("/console/ops/mix")
        cells = [page.locator(f"tr[data-place={p}] [data-tokens]").inner_text()
                 for p in ("self-hosted", "dashscope")]  # fmt: skip
        return all(int(c) > 0 for c in cells)

    until(mixed, what="tokens served by both places in the mix")
    shares = page.locator("[data-token-share]").all_inner_texts()
    assert abs(sum(float(s.rstrip("%")) for s in shares) - 100) < 0.5, shares
    expect(page.locator("tr[data-place=ark] [data-tokens]")).to_have_text("0")
    state = admin.storage_state()
    for lang, locale in (("en", "en-US"), ("zh", "zh-CN")):
        shots = browse.context(locale=locale, storage_state=state).new_page()
        for path in ("clouds", "prices", "mix", f"tenants/{acme}"):
            shots.goto(f"/console/ops/{path}")
            name = "tenant" if path.startswith("tenants/") else path
            browse.shot(shots, f"ops-{name}-{lang}")


def test_a_tenant_admin_cannot_reach_another_tenant(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    globex = make_tenant(admin, "globex")
    page = admin.new_page()
    secret = create_key(page, globex, "theirs")
    key_id = page.locator("tr", has_text="theirs").get_attribute("data-key-id")
    page.goto(f"/console/projects?tenant={acme}")
    page.get_by_label("Email").fill("boss@acme.example")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Role").select_option("tenant_admin")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator('tr[data-member="boss@acme.example"]')).to_be_visible()
    boss = browse.page()
    sign_in(boss, "boss@acme.example", ADMIN_PASSWORD)
    for path in ("/console/keys", "/console/usage", "/console/usage/invoice.json"):
        resp = boss.goto(f"{path}?tenant={globex}")
        assert resp is not None and resp.status == 404, path
        assert "globex" not in boss.content()
    for path in ("/console/ops/tenants", f"/console/ops/tenants/{globex}"):
        resp = boss.goto(path)
        assert resp is not None and resp.status == 403, path
    boss.goto("/console/keys")
    csrf = boss.locator("input[name=csrf]").first.input_value()
    for tenant in (globex, acme):
        status = boss.evaluate(
            """async ([url, body]) => (await fetch(url, {method: "POST", body:
                new URLSearchParams(body)})).status""",
            [f"/console/keys/{key_id}/revoke", {"csrf": csrf, "tenant": tenant}],
        )
        assert status in (404,), (tenant, status)
    with server.client(secret, max_retries=0) as client:  # still a live key
        assert sorted(m.id for m in client.models.list()) == ["qwen", "sim"]
