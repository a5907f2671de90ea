"""The console as a user meets it, in Chromium: first start, sign-in, keys used with the
official ``openai`` client, billing downloads equal to the CLI's, charts after traffic, the
playground's stream and stop, an operator deploying a simulator, both languages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.support.browser import ADMIN_EMAIL, ADMIN_PASSWORD, Browse, setup_url, sign_in, until
from tests.support.console_flows import invoice_flow, key_flow
from tests.support.server import LingyunServer

PAGES = ["", "/keys", "/usage", "/models", "/playground", "/projects", "/ops/tenants", "/ops/deployments",
         "/ops/clouds", "/ops/prices", "/ops/mix", "/ops/users", "/ops/audit"]  # fmt: skip


def test_first_start_prints_a_setup_link_that_works_once(
    browse: Browse, server: LingyunServer, admin: BrowserContext
) -> None:
    log = server.log_tail(200)
    assert "Console  http://127.0.0.1:" in log and "/console/setup?token=" in log
    assert "alembic" not in log.lower()
    page = admin.new_page()
    page.goto("/console")
    for name in ("Overview", "API keys", "Usage", "Models", "Playground"):
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    # A new platform admin has no tenant yet: tenant pages say so and lead to creating one.
    page.goto("/console/keys")
    expect(page.get_by_role("heading", name="No tenant yet.")).to_be_visible()
    page.get_by_role("link", name="Create tenant").click()
    page.wait_for_url("**/console/ops/tenants")
    other = browse.page()
    resp = other.goto(setup_url(server))
    assert resp is not None and resp.status == 404
    expect(other.get_by_text("This setup link is no longer valid.")).to_be_visible()


def test_root_redirects_to_the_console_sign_in(browse: Browse, server: LingyunServer) -> None:
    page = browse.page()
    page.goto("/")
    page.wait_for_url("**/console/login**")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()


def test_sign_in_wrong_password_then_right_then_sign_out(browse: Browse, admin: object) -> None:
    page = browse.page()
    page.goto("/console")
    page.wait_for_url("**/console/login**")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    sign_in(page)
    expect(page.get_by_role("link", name="API keys")).to_be_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ly_session"]["httpOnly"] and cookies["ly_session"]["sameSite"] == "Lax"
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")
    page.goto("/console/keys")
    page.wait_for_url("**/console/login**")


def _tab_to(page: Page, selector: str, limit: int = 30) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"document.activeElement.matches({selector!r})"):
            return
    raise AssertionError(f"Tab never reached {selector}")


def test_sign_in_and_navigate_by_keyboard_alone(browse: Browse, admin: object) -> None:
    page = browse.page()
    page.goto("/console/login")
    _tab_to(page, "#email")
    page.keyboard.type(ADMIN_EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type(ADMIN_PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console")
    _tab_to(page, "nav a[href^='/console/keys']")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/keys**")


def test_sign_in_is_rate_limited_with_a_clear_message(browse: Browse) -> None:
    page = browse.page()
    for _ in range(5):
        page.goto("/console/login")
        page.get_by_label("Email").fill("nobody@example.com")
        page.get_by_label("Password").fill("wrong password")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    page.goto("/console/login")
    page.get_by_label("Email").fill("nobody@example.com")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("Too many sign-in attempts")


def test_create_key_for_one_model_use_it_with_openai_then_revoke(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    key_flow(browse, admin, acme, server)


def test_invoice_downloads_equal_lingyun_invoice(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer, tmp_path: Path
) -> None:
    invoice_flow(browse, admin, acme, server, tmp_path)


def test_overview_charts_fill_after_real_traffic(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    client = server.client(server.create_key("acme"), max_retries=0)
    for i in range(3):
        client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": f"chart {i}"}], max_tokens=4
        )
    page = admin.new_page()

    def charted() -> bool:
        page.goto(f"/console?tenant={acme}")
        return int(page.locator("[data-stat=requests]").inner_text()) >= 3

    until(charted, what="requests on the overview")
    chart = page.get_by_role("img", name="Requests per day")
    expect(chart).to_be_visible()
    heights = [float(h) for h in chart.locator("rect").evaluate_all(
        "rs => rs.map(r => r.getAttribute('height'))")]  # fmt: skip
    assert max(heights) > 0
    assert page.get_by_role("img", name="Spend per day").locator("rect").count() == 30
    browse.shot(page, "overview-en")


def test_playground_streams_a_reply_and_stop_cancels_it(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    key = server.create_key("acme")
    page = admin.new_page()
    page.goto(f"/console/playground?tenant={acme}")
    page.get_by_label("API key").fill(key)
    page.get_by_label("Model").select_option("sim-slow")
    page.get_by_label("Message").fill("tell me a long story")
    page.get_by_role("button", name="Send").click()
    reply = page.locator("#pg-reply")
    until(lambda: len(reply.inner_text().split()) >= 3, what="streamed words")
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#pg-stats")).to_have_attribute("data-status", "stopped")
    browse.shot(page, "playground-en")
    shown = reply.inner_text()

    def cancelled() -> bool:
        page.goto(f"/console/usage?tenant={acme}&model=sim-slow")
        row = page.locator("table.log tbody tr").first
        return "client_gone" in row.inner_text()

    until(cancelled, what="the stopped request in the log")
    cells = page.locator("table.log tbody tr").first.locator("td").all_inner_texts()
    assert cells[2] == "499" and 0 < int(cells[5]) < 3000, cells
    assert len(shown.split()) < 3000


def test_operator_deploys_and_undeploys_a_simulator(
    browse: Browse, admin: BrowserContext, server: LingyunServer
) -> None:
    page = admin.new_page()
    page.goto("/console/ops/deployments")
    page.get_by_label("Name").fill("sim-extra")
    page.get_by_label("Engine").select_option("simulator")
    page.get_by_role("button", name="Deploy", exact=True).click()

    def healthy() -> bool:
        page.goto("/console/ops/deployments")
        cell = page.locator("tr[data-deployment=sim-extra] [data-healthy]")
        return cell.count() == 1 and cell.inner_text().startswith("1 /")

    until(healthy, timeout_s=90, what="sim-extra healthy")
    page.get_by_label("Replicas sim-extra").fill("2")
    page.get_by_role("button", name="Scale sim-extra").click()

    def scaled() -> bool:
        page.goto("/console/ops/deployments")
        return page.locator("tr[data-deployment=sim-extra] [data-healthy]").inner_text() == "2 / 2"

    until(scaled, timeout_s=90, what="sim-extra at two healthy replicas")
    expect(page.locator("tr[data-deployment=sim-extra] [data-state]")).to_have_count(2)
    browse.shot(page, "deployments-en")
    client = server.client(server.create_key("acme"), max_retries=0)
    msgs: Any = [{"role": "user", "content": "hi"}]
    assert client.chat.completions.create(model="sim-extra", messages=msgs, max_tokens=4)
    page.get_by_role("button", name="Undeploy sim-extra").click()

    def gone() -> bool:
        page.goto("/console/ops/deployments")
        return page.locator("tr[data-deployment=sim-extra]").count() == 0

    until(gone, timeout_s=90, what="sim-extra gone")
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="sim-extra", messages=msgs, max_tokens=4)


def test_every_page_in_english_and_chinese(
    browse: Browse, admin: BrowserContext, acme: str
) -> None:
    state = admin.storage_state()
    for locale, lang in (("en-US", "en"), ("zh-CN", "zh")):
        ctx = browse.context(locale=locale, storage_state=state)
        anon = browse.page(locale=locale)
        anon.goto("/console/login")
        expect(anon.locator("html")).to_have_attribute("lang", "zh-CN" if lang == "zh" else "en")
        expect(anon.get_by_label("邮箱" if lang == "zh" else "Email")).to_be_visible()
        browse.shot(anon, f"login-{lang}")
        page = ctx.new_page()
        for path in PAGES:
            page.goto(f"/console{path}?tenant={acme}")
            assert page.locator("main h1").count() == 1
            name = path.strip("/").replace("/", "-") or "overview"
            browse.shot(page, f"{name}-{lang}")
        expect(
            page.get_by_role("link", name="概览" if lang == "zh" else "Overview")
        ).to_be_visible()
    # The header switch overrides the browser's language.
    page = browse.context(locale="en-US", storage_state=state).new_page()
    page.goto("/console/models")
    page.get_by_role("link", name="中文").click()
    expect(page.get_by_role("heading", name="模型")).to_be_visible()


def test_projects_and_members_then_the_member_signs_in(
    browse: Browse, admin: BrowserContext, acme: str
) -> None:
    page = admin.new_page()
    page.goto(f"/console/projects?tenant={acme}")
    page.get_by_label("Name").fill("research")
    page.get_by_role("button", name="Create project").click()
    expect(page.locator("tr[data-project=research]")).to_be_visible()
    page.get_by_label("Email").fill("dev@acme.example")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_label("Role").select_option("member")
    page.get_by_label("Project").select_option(label="research")
    page.get_by_role("button", name="Add member").click()
    expect(page.locator('tr[data-member="dev@acme.example"]')).to_contain_text("research")
    member = browse.page()
    sign_in(member, "dev@acme.example", ADMIN_PASSWORD)
    member.goto("/console/keys")
    options = member.get_by_label("Project").locator("option").all_inner_texts()
    assert options == ["research"]
    expect(member.get_by_role("link", name="Tenants")).to_have_count(0)
    member.goto("/console/projects")
    expect(member.get_by_role("button", name="Create project")).to_have_count(0)


def test_api_docs_load_from_local_assets(browse: Browse) -> None:
    page = browse.page()
    page.goto("/docs")
    # Swagger UI parses 1.7 MB of script first: slow on a busy machine, so a longer wait.
    expect(page.get_by_text("/admin/v1/tenants/{tenant_id}/invoices/{month}").first).to_be_visible(
        timeout=60_000
    )
    browse.shot(page, "api-docs")


def test_pages_load_only_the_consoles_own_small_assets(
    browse: Browse, admin: BrowserContext, acme: str
) -> None:
    """Page weight: every console page loads one script and one stylesheet, both small."""
    page = admin.new_page()
    weights: dict[str, int] = {}
    page.on("response", lambda r: r.request.resource_type in ("script", "stylesheet")
            and weights.__setitem__(r.url, len(r.body())))  # fmt: skip
    for path in PAGES:
        page.goto(f"/console{path}?tenant={acme}")
    assert set(weights) == {f"{browse.base_url}/console/static/console.js",
                            f"{browse.base_url}/console/static/console.css"}, weights  # fmt: skip
    assert sum(weights.values()) < 20_000, weights
