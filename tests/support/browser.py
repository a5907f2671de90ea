"""Helpers of the browser tests: watched pages, sign-in, the setup link."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.support.server import LingyunServer

CHROMIUM = "/usr/bin/chromium"
HTTP_STATUS_LOG = "Failed to load resource: the server responded with a status of"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic"]  # fmt: skip
ADMIN_EMAIL = "root@example.com"
ADMIN_PASSWORD = "correct horse battery"


def console_models(tmp: Path) -> list[dict[str, Any]]:
    return [
        {"name": "sim", "engine": "simulator", "args": {"ttft_ms": 5}},
        # Slow and long, so the playground's Stop lands mid-stream.
        {"name": "sim-slow", "engine": "simulator",
         "args": {"ttft_ms": 10, "itl_ms": 40, "output_tokens": 3000}},
    ]  # fmt: skip


def setup_url(server: LingyunServer) -> str:
    match = re.search(r"(http://\S+/console/setup\?token=\S+)", server.log_tail(200))
    assert match, server.log_tail()
    return match.group(1)


@dataclass
class Browse:
    """Opens watched pages; ``check()`` fails on JS errors or requests off 127.0.0.1."""

    browser: Browser
    base_url: str
    shots: Path
    errors: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)

    def context(self, locale: str = "en-US", **kwargs: Any) -> BrowserContext:
        ctx = self.browser.new_context(locale=locale, base_url=self.base_url, **kwargs)
        ctx.on("request", self._request)
        ctx.on("page", self._watch)
        self.contexts.append(ctx)
        return ctx

    def page(self, locale: str = "en-US", **kwargs: Any) -> Page:
        return self.context(locale, **kwargs).new_page()

    def _request(self, request: Any) -> None:
        host = urlsplit(request.url).hostname
        if request.url.startswith(("data:", "blob:", "about:")):
            return
        if host != "127.0.0.1":
            self.outside.append(request.url)

    def _watch(self, page: Page) -> None:
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda msg: self._console(page, msg))

    def _console(self, page: Page, msg: Any) -> None:
        # Chromium logs an HTTP error status of a page as a console error; the tests assert
        # those statuses themselves. Everything else at error level is a script error.
        if msg.type == "error" and not msg.text.startswith(HTTP_STATUS_LOG):
            self.errors.append(f"{page.url}: {msg.text}")

    def shot(self, page: Page, name: str) -> Path:
        path = self.shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    def check(self) -> None:
        errors, outside = list(self.errors), list(self.outside)
        self.errors.clear()
        self.outside.clear()
        assert not errors, f"JavaScript errors: {errors}"
        assert not outside, f"requests left 127.0.0.1: {outside}"

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()
        self.contexts.clear()


def sign_in(page: Page, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    page.goto("/console/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console")


def until(check: Callable[[], object], timeout_s: float = 60.0, what: str = "") -> None:
    """Poll ``check()`` until it is truthy (a state, never a fixed sleep)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.2)


def create_key(page: Page, tenant_id: str, name: str, models: Iterable[str] = ()) -> str:
    """Create a key on the API keys page (ticking ``models``); returns the secret shown."""
    page.goto(f"/console/keys?tenant={tenant_id}")
    page.get_by_label("Name").fill(name)
    for model in models:
        page.get_by_role("checkbox", name=model, exact=True).check()
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label("Secret key")
    expect(secret).to_have_attribute("readonly", "")
    value = secret.input_value()
    assert value.startswith("sk-"), value
    return value


def make_tenant(admin: BrowserContext, name: str) -> str:
    """Create tenant ``name`` on the operator page; returns its id (from its Manage link)."""
    page = admin.new_page()
    page.goto("/console/ops/tenants")
    page.get_by_label("Name").fill(name)
    page.get_by_role("button", name="Create tenant").click()
    href = page.get_by_role("link", name=f"Manage {name}").get_attribute("href") or ""
    page.close()
    assert href.startswith("/console/ops/tenants/ten_"), href
    return href.rsplit("/", 1)[1]
