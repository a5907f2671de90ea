"""One populated server per module and database backend (see ``tests/support/console.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.console import Console, console_world
from tests.support.databases import fresh_postgres


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Console]:  # fmt: skip
    data_dir = tmp_path_factory.mktemp("admin-api")
    if request.param == "sqlite":
        with console_world(data_dir) as c:
            yield c
    else:
        with fresh_postgres() as url, console_world(data_dir, url) as c:
            yield c
