"""The channel operations every front door shares (CLI, admin API): list, disable, enable.

They act on the ``upstream_channels`` table; a running gateway's keeper applies a disable or
enable within a second (``keeper.py``). Each operator action is one audit event in the same
transaction as the change.
"""

from __future__ import annotations

from sqlalchemy import select

from lingyun.errors import NotFoundError
from lingyun.store.channels import ChannelRow
from lingyun.store.db import Database
from lingyun.tenancy.audit import Actor, record

ROW_FIELDS = (
    "deployment", "channel", "state", "disabled", "disabled_by", "base_url", "model",
    "priority", "weight", "requests", "failures", "error_rate", "latency_ms", "last_error",
    "transitions", "updated_at",
)  # fmt: skip


def row_dict(row: ChannelRow) -> dict[str, object]:
    return {name: getattr(row, name) for name in ROW_FIELDS}


async def list_channels(db: Database, deployment: str | None = None) -> list[ChannelRow]:
    query = select(ChannelRow).order_by(ChannelRow.deployment, ChannelRow.channel)
    if deployment is not None:
        query = query.where(ChannelRow.deployment == deployment)
    async with db.session() as s:
        return list((await s.scalars(query)).all())


async def set_disabled(
    db: Database,
    deployment: str,
    channel: str,
    *,
    disabled: bool,
    actor: Actor,
    known: set[tuple[str, str]] | None = None,
) -> ChannelRow:
    """Disable or enable a channel. ``known``: the declared channels, when the caller knows
    them; otherwise a channel is known once a gateway wrote its row."""
    async with db.session() as s, s.begin():
        row = await s.get(ChannelRow, (deployment, channel))
        if row is None:
            if known is None or (deployment, channel) not in known:
                raise NotFoundError(f"No channel {channel!r} on deployment {deployment!r}.")
            row = ChannelRow(
                deployment=deployment, channel=channel, state="closed", priority=0, weight=1.0,
                requests=0, failures=0, error_rate=0.0, transitions=0,
            )  # fmt: skip
            s.add(row)
        row.disabled = disabled
        row.disabled_by = actor.name if disabled else None
        if disabled:
            row.state = "disabled"
        record(
            s,
            actor,
            "channel.disable" if disabled else "channel.enable",
            target_type="channel",
            target_id=f"{deployment}/{channel}",
            details={"deployment": deployment, "channel": channel},
        )
    return row
