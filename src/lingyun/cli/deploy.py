"""``lingyun deploy`` / ``undeploy`` / ``models``: deployments stored in the database.

A running ``lingyun serve`` on the same database picks the change up within seconds.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from pydantic import ValidationError

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
from lingyun.config import DeploymentConfig, describe
from lingyun.serving.deployments import DeploymentStore, merge


def _arg_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def deploy(
    name: Annotated[str, typer.Argument(help="The model name clients will send.")],
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="transformers, embeddings, vllm, llamacpp, openai-compatible, simulator.",
        ),
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="Local path, GGUF file or upstream model id.")
    ] = None,
    replicas: Annotated[int, typer.Option("--replicas")] = 1,
    provider: Annotated[str | None, typer.Option("--provider", help="Upstream preset.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url")] = None,
    api_key_env: Annotated[str | None, typer.Option("--api-key-env")] = None,
    arg: Annotated[
        list[str] | None, typer.Option("--arg", help="Engine argument KEY=VALUE (repeatable).")
    ] = None,
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Declare (or replace) a deployment."""
    args: dict[str, Any] = {}
    for item in arg or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--arg {item!r} must look like KEY=VALUE")
        args[key] = _arg_value(value)
    try:
        dep = DeploymentConfig(
            name=name, engine=engine, model=model, replicas=replicas, provider=provider,
            base_url=base_url, api_key_env=api_key_env, args=args,
        )  # fmt: skip
    except ValidationError as exc:
        fail(describe(exc))
    settings = settings_from(config, data_dir, database_url)
    if any(d.name == name for d in settings.deployments() if settings.models is not None):
        fail(f"{name!r} is declared in the config file; change it there")
    run_with_db(settings, lambda db: DeploymentStore(db).save(dep))
    typer.echo(f"Deployed {name} ({engine}, {replicas} replica(s)).")


def undeploy(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Remove a deployment declared with `lingyun deploy`."""
    settings = settings_from(config, data_dir, database_url)
    run_with_db(settings, lambda db: DeploymentStore(db).remove(name))
    typer.echo(f"Removed {name}.")


models = typer.Typer(no_args_is_help=True, help="The model catalog.")


@models.command("list")
def list_models(
    data_dir: DataDirOpt = None,
    database_url: DatabaseUrlOpt = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List deployments from the config file and the database."""
    settings = settings_from(config, data_dir, database_url)

    async def work(db: Any) -> list[DeploymentConfig]:
        return merge(settings.deployments(), await DeploymentStore(db).list())

    deps = run_with_db(settings, work)
    if as_json:
        emit_json([d.model_dump(exclude_defaults=True) for d in deps])
    else:
        for d in deps:
            typer.echo(f"{d.name}  {d.engine}  {d.model or d.base_url or ''}  x{d.replicas}")
