"""Options every verb shares (where the data lives) and the glue to run async services."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from lingyun.config import Settings, load_settings
from lingyun.errors import LingyunError
from lingyun.store.db import Database

T = TypeVar("T")

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Where Lingyun keeps its data [default: ./.lingyun]."),
]
DatabaseUrlOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL, e.g. postgresql+asyncpg://user@host/db [default: SQLite].",
    ),
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", exists=True, dir_okay=False, help="YAML config file.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def settings_from(
    config: Path | None, data_dir: Path | None, database_url: str | None, **more: Any
) -> Settings:
    try:
        return load_settings(config, data_dir=data_dir, database_url=database_url, **more)
    except ValueError as exc:
        fail(str(exc))


def run_with_db(settings: Settings, work: Callable[[Database], Awaitable[T]]) -> T:
    """Open the database (migrating it), run ``work``, close; errors become exit code 1."""

    async def main() -> T:
        db = Database(settings.resolved_database_url())
        try:
            await db.migrate()
            return await work(db)
        finally:
            await db.close()

    try:
        return asyncio.run(main())
    except LingyunError as exc:
        fail(exc.message)
    except ValueError as exc:
        fail(str(exc))


def parse_expiry(raw: str | None, flag: str = "--expires") -> datetime | None:
    """An ISO 8601 time with a timezone (an expiry must not depend on the server's clock zone)."""
    if raw is None:
        return None
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        fail(f"{flag} {raw!r} is not an ISO 8601 time")
    if when.tzinfo is None:
        fail(f"{flag} needs a timezone, e.g. 2027-01-01T00:00:00+00:00")
    return when


def fail(message: str) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write("\n")
