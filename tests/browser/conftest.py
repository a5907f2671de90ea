"""Browser tests: Debian's Chromium driven by Playwright against a real ``lingyun serve``.

One server and one browser per module. Every page opened through :class:`Browse` is
watched: a JavaScript error or a request to anywhere but 127.0.0.1 fails the test that
caused it. Screenshots go to ``$LINGYUN_CONSOLE_SHOTS`` (or a temp dir), printed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

from tests.support.browser import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    CHROMIUM,
    CHROMIUM_ARGS,
    Browse,
    console_models,
    make_tenant,
    setup_url,
)
from tests.support.databases import fresh_sqlite
from tests.support.server import LingyunServer

SHOTS: list[Path] = []


@pytest.fixture(scope="session")
def shots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = os.environ.get("LINGYUN_CONSOLE_SHOTS")
    path = Path(raw) if raw else tmp_path_factory.mktemp("console-shots")
    path.mkdir(parents=True, exist_ok=True)
    SHOTS.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for path in SHOTS:
        terminalreporter.write_line(f"console screenshots: {path}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LingyunServer]:
    data_dir = tmp_path_factory.mktemp("console")
    srv = LingyunServer(data_dir=data_dir, database_url=fresh_sqlite(data_dir),
                        models=console_models(data_dir))  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def browse(chromium: Browser, server: LingyunServer, shots_dir: Path) -> Iterator[Browse]:
    b = Browse(chromium, server.base_url, shots_dir)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture(autouse=True)
def _no_js_errors_or_outside_requests(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "browse" in request.fixturenames:
        request.getfixturevalue("browse").check()


@pytest.fixture(scope="module")
def admin(browse: Browse, server: LingyunServer) -> Iterator[BrowserContext]:
    """The first platform admin, made through the setup link the server printed."""
    ctx = browse.context()
    page = ctx.new_page()
    page.goto(setup_url(server))
    browse.shot(page, "setup-en")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Create the platform admin").click()
    page.wait_for_url("**/console")
    page.close()
    yield ctx


@pytest.fixture(scope="module")
def acme(admin: BrowserContext) -> str:
    """Tenant ``acme``, created on the operator page; returns its id."""
    return make_tenant(admin, "acme")
