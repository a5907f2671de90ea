"""One populated server per database backend (see ``tests/support/tenancy.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.tenancy import World, start_world


@pytest.fixture(scope="session")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = start_world(database_url, tmp_path_factory.mktemp("security"))
    try:
        yield w
    finally:
        w.close()
        w.server.stop()
