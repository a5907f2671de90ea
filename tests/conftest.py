"""Suite-wide fixtures: databases (SQLite and PostgreSQL, both real) and the async backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import fresh_postgres, fresh_sqlite
from tests.support.tiny_model import build_tiny_chat_model


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Each test that takes this runs twice: on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield fresh_sqlite(tmp_path_factory.mktemp("sqlite"))
    else:
        with fresh_postgres() as url:
            yield url


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database no other test touches, for tests that read whole tables."""
    if request.param == "sqlite":
        yield fresh_sqlite(tmp_path)
    else:
        with fresh_postgres() as url:
            yield url


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-model") / "tiny")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database of this module's own, for modules that set prices (the session's database
    is shared, and a list price there would bill every later module's requests)."""
    if request.param == "sqlite":
        yield fresh_sqlite(tmp_path_factory.mktemp("sqlite-module"))
    else:
        with fresh_postgres() as url:
            yield url
