"""One populated server per database backend, shared with the security suite (see
``tests/support/tenancy.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.tenancy import World, shared_world


@pytest.fixture(scope="session")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with shared_world(database_url, tmp_path_factory.mktemp("tenancy")) as w:
        yield w
