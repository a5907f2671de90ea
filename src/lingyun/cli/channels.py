"""``lingyun channels list|disable|enable|test`` and ``lingyun adapters list|add|remove``.

Both act on the database a running ``lingyun serve`` shares: a disable or enable reaches the
gateway within a second, an added or removed adapter within its deployment poll. ``channels
list`` shows the declared channels with the state the serving gateway last wrote; ``channels
test`` sends one probe request from this process (it needs the channel's key variable).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import aiohttp
import typer

from lingyun.cli.common import (
    ConfigOpt,
    DatabaseUrlOpt,
    DataDirOpt,
    JsonOpt,
    emit_json,
    fail,
    run_with_db,
    settings_from,
)
from lingyun.config import DeploymentConfig, Settings
from lingyun.serving.adapters import AdapterStore, attach
from lingyun.serving.channels import ChannelRegistry
from lingyun.serving.channels.probe import probe
from lingyun.serving.channels.registry import channel_names
from lingyun.serving.channels.service import list_channels, row_dict, set_disabled
from lingyun.serving.deployments import DeploymentStore, merge
from lingyun.store.db import Database
from lingyun.tenancy.audit import CLI_ACTOR

channels = typer.Typer(no_args_is_help=True, help="Upstream channels of openai-compatible models.")
adapters = typer.Typer(no_args_is_help=True, help="LoRA adapters served on a base deployment.")

DepArg = Annotated[str, typer.Argument(help="Deployment (model) name.")]
ChanArg = Annotated[str, typer.Argument(help="Channel name (ch0, ch1, ... when unnamed).")]


async def _declared(settings: Settings, db: Database) -> list[DeploymentConfig]:
    stored = merge(settings.deployments(), await DeploymentStore(db).list())
    return attach(stored, await AdapterStore(db).list())


@channels.command("list")
def channels_list(
    deployment: Annotated[str | None, typer.Option("--deployment")] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Channels with state, last error, error rate and latency."""
    settings = settings_from(config, data_dir, database_url)

    async def work(db: Database) -> list[dict[str, Any]]:
        rows = {(r.deployment, r.channel): row_dict(r) for r in await list_channels(db)}
        out = []
        for dep in await _declared(settings, db):
            if deployment is not None and dep.name != deployment:
                continue
            for name, ch in zip(channel_names(dep), dep.channels, strict=True):
                base = {
                    "deployment": dep.name, "channel": name, "state": "unknown",
                    "disabled": False, "priority": ch.priority, "weight": ch.weight,
                }  # fmt: skip
                out.append({**base, **rows.get((dep.name, name), {})})
        return out

    data = run_with_db(settings, work)
    if as_json:
        emit_json(data)
        return
    for d in data:
        rate = d.get("error_rate")
        typer.echo(
            f"{d['deployment']}/{d['channel']}  {d['state']}  tier {d['priority']}  "
            f"weight {d['weight']}  errors {rate if rate is not None else '-'}  "
            f"latency {d.get('latency_ms') or '-'} ms  {d.get('last_error') or ''}"
        )


def _toggle(
    deployment: str, channel: str, disabled: bool, settings: Settings
) -> None:  # fmt: skip
    async def work(db: Database) -> None:
        known = {(d.name, n) for d in await _declared(settings, db) for n in channel_names(d)}
        await set_disabled(db, deployment, channel, disabled=disabled, actor=CLI_ACTOR,
                           known=known)  # fmt: skip

    run_with_db(settings, work)
    typer.echo(f"{'Disabled' if disabled else 'Enabled'} {deployment}/{channel}.")


@channels.command("disable")
def channels_disable(
    deployment: DepArg, channel: ChanArg, data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Take a channel out of traffic until enabled again."""
    _toggle(deployment, channel, True, settings_from(config, data_dir, database_url))


@channels.command("enable")
def channels_enable(
    deployment: DepArg, channel: ChanArg, data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Put a disabled channel back (closed, with a fresh error window)."""
    _toggle(deployment, channel, False, settings_from(config, data_dir, database_url))


@channels.command("test")
def channels_test(
    deployment: DepArg, channel: ChanArg, data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Send one small request through a channel now and report how it went."""
    settings = settings_from(config, data_dir, database_url)
    registry = ChannelRegistry()
    registry.apply(run_with_db(settings, lambda db: _declared(settings, db)))
    found = registry.find(deployment, channel)
    if found is None:
        fail(f"no channel {channel!r} on deployment {deployment!r}")
    if found.replica is None:
        fail(found.error or "the channel is misconfigured")
    replica = found.replica

    async def run() -> dict[str, object]:
        async with aiohttp.ClientSession(trust_env=False) as session:
            return (await probe(session, replica)).as_dict()

    result = asyncio.run(run())
    if as_json:
        emit_json(result)
    else:
        typer.echo(f"{'ok' if result['ok'] else 'FAILED'}  {result['latency_ms']} ms  "
                   f"{result['error'] or ''}")  # fmt: skip
    if not result["ok"]:
        raise typer.Exit(code=1)


@adapters.command("list")
def adapters_list(
    data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None, config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:  # fmt: skip
    """Every adapter, from the config file and added ones, with its base deployment."""
    settings = settings_from(config, data_dir, database_url)
    deps = run_with_db(settings, lambda db: _declared(settings, db))
    data = [{"name": a.name, "base": d.name, "path": a.path} for d in deps for a in d.adapters]
    if as_json:
        emit_json(data)
    else:
        for item in data:
            typer.echo(f"{item['name']}  on {item['base']}  {item['path']}")


@adapters.command("add")
def adapters_add(
    base: Annotated[str, typer.Argument(help="The base deployment.")],
    name: Annotated[str, typer.Argument(help="The adapter's model name.")],
    path: Annotated[str, typer.Argument(help="PEFT adapter directory (on the replicas' host).")],
    data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Serve a LoRA adapter as its own model; set its price with `lingyun prices set NAME`."""
    settings = settings_from(config, data_dir, database_url)

    async def work(db: Database) -> None:
        await AdapterStore(db).add(await _declared(settings, db), base, name, path, CLI_ACTOR)

    run_with_db(settings, work)
    typer.echo(f"Added adapter {name} on {base}.")


@adapters.command("remove")
def adapters_remove(
    name: Annotated[str, typer.Argument(help="The adapter's model name.")],
    data_dir: DataDirOpt = None, database_url: DatabaseUrlOpt = None, config: ConfigOpt = None,
) -> None:  # fmt: skip
    """Stop serving an adapter added with `lingyun adapters add`."""
    settings = settings_from(config, data_dir, database_url)
    run_with_db(settings, lambda db: AdapterStore(db).remove(name, CLI_ACTOR))
    typer.echo(f"Removed adapter {name}.")
