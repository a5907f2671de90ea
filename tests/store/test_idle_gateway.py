"""An idle gateway issues no database statements: the change feed's beats pass, nothing is
read or written. Counted in-process by SQLAlchemy's ``before_cursor_execute`` on every engine
the gateway's ``Database`` holds (the feed's own watcher connection is outside them, by
design: it is the one thing left, a ``PRAGMA data_version`` or an idle ``LISTEN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from lingyun.app import create_app
from lingyun.config import Settings
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database

pytestmark = pytest.mark.anyio
BEATS = 12  # feed beats of quiet asked for (0.5 s each: six seconds)


def _count(db: Database) -> list[str]:
    seen: list[str] = []

    def on_execute(_c: Any, _cur: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    engines = [db.engine.sync_engine, db._sync, db._fast]
    for engine in engines:
        if engine is not None:
            event.listen(engine, "before_cursor_execute", on_execute)
    return seen


@pytest.mark.parametrize(
    "metering",
    [
        pytest.param(False, id="metering-off"),
        pytest.param(True, id="metering-on"),
    ],
)
async def test_an_idle_gateway_issues_no_statements(
    fresh_database_url: str, tmp_path: Path, metering: bool
) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=fresh_database_url, models=[], metering=metering
    )
    app = create_app(settings)
    with anyio.fail_after(60):
        async with app.router.lifespan_context(app):
            feed: ChangeFeed = app.state.feed
            await feed.ticked(4)  # past start-up's own reads (first syncs, first beats)
            seen = _count(app.state.db)
            await feed.ticked(BEATS)
            statements = list(seen)
    assert statements == [], statements[:10]
