"""``lingyun serve``: the gateway, its replicas and the API in one process, or in several
(``--workers N``: a supervisor and N gateway processes on one port, ``serving/workers.py``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from lingyun.cli.common import ConfigOpt, DatabaseUrlOpt, DataDirOpt, fail, settings_from
from lingyun.serving.workers import WorkerPool, worker_count


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1].")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [default: 8000].")] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    database_url: DatabaseUrlOpt = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            "--redis-url",
            help="Share rate limits with other gateways through Redis, e.g. redis://host:6379/0.",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Run replicas on this Ray cluster: auto, HOST:PORT or ray://HOST:PORT.",
        ),
    ] = None,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            "--otlp-endpoint",
            help="Send traces (a span per pipeline stage) to this OTLP/HTTP collector, "
            "e.g. http://127.0.0.1:4318. Off by default.",
        ),
    ] = None,
    workers: Annotated[
        str,
        typer.Option(
            "--workers",
            help="Gateway processes on the one port: a number, or auto (one per CPU). They "
            "share limits, leases and the ledger; one of them runs the replicas.",
        ),
    ] = "1",
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
) -> None:
    """Serve the OpenAI-compatible API and start every declared deployment's replicas."""
    settings = settings_from(
        config,
        data_dir,
        database_url,
        host=host,
        port=port,
        redis_url=redis_url,
        ray_address=ray_address,
        otlp_endpoint=otlp_endpoint,
    )
    configure_logging(log_level)
    Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
    try:
        count = worker_count(workers)
    except ValueError as exc:
        fail(str(exc))
    if count > 1:
        # Before anything imports prometheus-client: the workers inherit the environment.
        raise typer.Exit(WorkerPool(settings, count, log_level).run())

    import uvicorn  # the server's imports are for `serve` alone: other verbs start faster

    from lingyun.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


def configure_logging(log_level: str) -> None:
    from lingyun.observability.request_id import install_log_context

    install_log_context()  # every line names the request it was written for
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s",
    )
    # Health probes and the relay log every request at INFO; keep the server log readable.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # the banner says what matters
