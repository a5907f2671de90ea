"""The write side of the change feed: one revision counter per topic, bumped by the database.

Each topic (``prices``, ``deployments`` ...) has one row in ``revisions``. Triggers on the
tables a topic covers bump that row in the same transaction as the change, and on PostgreSQL
also ``NOTIFY lingyun_changes, '<topic>'`` (delivered at commit, never for a rollback).
Triggers, not ORM events or calls in the services, because nothing can forget them: a service
added later, a bulk ``update()``/``delete()`` that skips the ORM's flush, the CLI, a raw SQL
fix by an operator, another gateway's version — all bump the counter.

Hot columns stay quiet: a ``Watch`` may name the columns whose UPDATE counts (an operator's
``disabled`` on a channel, not the keeper's live-state writes; a free quota's grant, not its
``used_tokens``). INSERT and DELETE always count.

``install`` runs after every migration (``store/migrate.py``): SQLite's table rebuilds
(Alembic batch mode) drop a table's triggers, so they are put back from ``TOPICS``, the one
list of what bumps what. Trigger names carry ``TRIGGER_VERSION``; change the SQL, bump it,
and the old ones are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, String, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from lingyun.store.models import Base

CHANNEL = "lingyun_changes"  # PostgreSQL NOTIFY channel; the payload is the topic
TRIGGER_VERSION = 1
_PREFIX = "lingyun_rev_"
_FUNCTION = "lingyun_bump_revision"


class Revision(Base):
    __tablename__ = "revisions"

    topic: Mapped[str] = mapped_column(String(64), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


@dataclass(frozen=True)
class Watch:
    table: str
    # An UPDATE bumps the topic only when it sets one of these; () means any column.
    columns: tuple[str, ...] = ()


TOPICS: dict[str, tuple[Watch, ...]] = {
    "prices": (Watch("prices"),),
    "deployments": (Watch("deployments"), Watch("lora_adapters")),
    "grants": (Watch("model_grants"),),
    "rate-limits": (Watch("rate_limits"),),
    "channels": (Watch("upstream_channels", ("disabled", "disabled_by")),),
    # The metering journal's BillingScopes: which scopes have budgets, which tenants quotas.
    "billing-scopes": (
        Watch("budgets"),
        Watch("free_quotas", ("tenant_id", "model", "granted_tokens", "expires_at")),
    ),
    # New batches, cancellations, claims and releases wake the batch runners (progress and
    # lease renewals stay quiet).
    "batches": (Watch("batches", ("status", "owner")),),
}


def _name(topic: str, table: str, op: str) -> str:
    return f"{_PREFIX}v{TRIGGER_VERSION}_{table}_{op}_{topic.replace('-', '_')}"


def _wanted() -> list[tuple[str, str, Watch, str]]:
    """(trigger name, topic, watch, event) for every trigger ``TOPICS`` asks for."""
    out = []
    for topic, watches in TOPICS.items():
        for w in watches:
            update = "UPDATE" + (f" OF {', '.join(w.columns)}" if w.columns else "")
            for op, event in (("ins", "INSERT"), ("del", "DELETE"), ("upd", update)):
                out.append((_name(topic, w.table, op), topic, w, event))
    return out


def install(conn: Connection) -> None:
    """Create the ``revisions`` rows and triggers that are missing; drop outdated ones."""
    if conn.dialect.name == "postgresql":
        # Gateways starting together must not race on CREATE TRIGGER.
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('lingyun_revisions'))"))
        conn.execute(
            text("INSERT INTO revisions (topic, revision) VALUES (:t, 0) ON CONFLICT DO NOTHING"),
            [{"t": t} for t in TOPICS],
        )
        _install_postgres(conn)
    else:
        conn.execute(
            text("INSERT OR IGNORE INTO revisions (topic, revision) VALUES (:t, 0)"),
            [{"t": t} for t in TOPICS],
        )
        _install_sqlite(conn)


def _install_sqlite(conn: Connection) -> None:
    have = set(
        conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE :p"),
            {"p": _PREFIX + "%"},
        ).scalars()
    )
    wanted = _wanted()
    for name in have - {w[0] for w in wanted}:
        conn.execute(text(f'DROP TRIGGER IF EXISTS "{name}"'))
    for name, topic, w, event in wanted:
        if name not in have:
            conn.execute(
                text(
                    f'CREATE TRIGGER "{name}" AFTER {event} ON "{w.table}" BEGIN '
                    f"UPDATE revisions SET revision = revision + 1 WHERE topic = '{topic}'; END"
                )
            )


_PG_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE revisions SET revision = revision + 1 WHERE topic = TG_ARGV[0];
    PERFORM pg_notify('{CHANNEL}', TG_ARGV[0]);
    RETURN NULL;
END $$
"""


def _install_postgres(conn: Connection) -> None:
    rows = conn.execute(
        text(
            "SELECT t.tgname, c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE t.tgname LIKE :p"
        ),
        {"p": _PREFIX + "%"},
    ).all()
    have = {name: table for name, table in rows}
    wanted = _wanted()
    missing = [w for w in wanted if w[0] not in have]
    for name in set(have) - {w[0] for w in wanted}:
        conn.execute(text(f'DROP TRIGGER IF EXISTS "{name}" ON "{have[name]}"'))
    if missing:
        conn.execute(text(_PG_FUNCTION))
    for name, topic, w, event in missing:
        # Per statement: a bulk change of a thousand rows bumps (and notifies) once.
        conn.execute(
            text(
                f'CREATE TRIGGER "{name}" AFTER {event} ON "{w.table}" FOR EACH STATEMENT '
                f"EXECUTE FUNCTION {_FUNCTION}('{topic}')"
            )
        )
