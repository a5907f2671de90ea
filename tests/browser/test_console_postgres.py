"""The flows that touch money and tenancy, once more with PostgreSQL under the server: a key
narrowed to one model used with ``openai`` then revoked, and an invoice download equal to
``lingyun invoice``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from tests.support.browser import Browse, console_models
from tests.support.console_flows import invoice_flow, key_flow
from tests.support.databases import fresh_postgres
from tests.support.server import LingyunServer


@pytest.fixture(scope="module", autouse=True)
def pg_url() -> Iterator[str]:
    """Made before Playwright starts: its event loop would refuse the driver's asyncio.run."""
    with fresh_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[LingyunServer]:
    data_dir = tmp_path_factory.mktemp("console-pg")
    srv = LingyunServer(data_dir=data_dir, database_url=pg_url,
                        models=console_models(data_dir))  # fmt: skip
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_key_for_one_model_on_postgres(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer
) -> None:
    key_flow(browse, admin, acme, server)


def test_invoice_download_on_postgres(
    browse: Browse, admin: BrowserContext, acme: str, server: LingyunServer, tmp_path: Path
) -> None:
    invoice_flow(browse, admin, acme, server, tmp_path)
