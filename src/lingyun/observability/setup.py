"""Wiring: what ``create_app`` calls to switch observability on, and what its lifespan stops.

``install(app, settings)`` at app creation (middleware, routes, the request log);
``await start(app, settings, db, supervisor, deployments)`` in the lifespan, which returns a
handle whose ``stop()`` runs at shutdown (the replica scraper, the ops listener, traces).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI
from prometheus_client.registry import Collector

from lingyun.config import DeploymentConfig, Settings
from lingyun.observability import hooks, journal_lag, tracing
from lingyun.observability.collectors import ServingCollector
from lingyun.observability.health import Readiness, migration_heads
from lingyun.observability.prompt_log import PromptLog
from lingyun.observability.replica_signals import ReplicaScraper
from lingyun.observability.request_id import RequestIdMiddleware, install_log_context
from lingyun.observability.request_log import RequestLog
from lingyun.observability.routes import Ops, router
from lingyun.serving.replica import Replica
from lingyun.serving.supervisor import Supervisor
from lingyun.store.db import Database

logger = logging.getLogger(__name__)


def install(app: FastAPI, settings: Settings) -> None:
    install_log_context()
    hooks.configure(
        metrics_on=settings.metrics,
        log=RequestLog.open(settings.request_log, settings.data_dir),
    )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(router)


@dataclass
class Running:
    scraper: ReplicaScraper | None = None
    prompts: PromptLog | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    servers: list[object] = field(default_factory=list)

    async def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True  # type: ignore[attr-defined]
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)
        if self.scraper is not None:
            await self.scraper.stop()
        tracing.shutdown()  # flushes the spans still queued
        if hooks.OBSERVER.log is not None:
            hooks.OBSERVER.log.flush()  # the request log lines still batched
        if self.prompts is not None:
            hooks.OBSERVER.prompts = None
            await self.prompts.stop()


def _self_hosted(
    sup: Supervisor, deployments: Callable[[], Sequence[DeploymentConfig]]
) -> Callable[[], Iterator[Replica]]:
    from lingyun.engines.registry import ENGINES, ProcessEngine

    def targets() -> Iterator[Replica]:
        for dep in deployments():
            if isinstance(ENGINES.get(dep.engine), ProcessEngine):
                yield from sup.replicas(dep.name)

    return targets


async def start(
    app: FastAPI,
    settings: Settings,
    db: Database,
    sup: Supervisor,
    deployments: Callable[[], Sequence[DeploymentConfig]],
) -> Running:
    running = Running()
    tracing.configure(settings.otlp_endpoint)
    running.prompts = hooks.OBSERVER.prompts = PromptLog(db, settings.prompt_log_purge_interval_s)
    running.prompts.start()
    if settings.otlp_endpoint:
        logger.info("traces to %s (OTLP/HTTP)", settings.otlp_endpoint)
    if settings.metrics:
        running.scraper = ReplicaScraper(
            _self_hosted(sup, deployments), settings.replica_metrics_interval_s
        )
        running.scraper.start()
    collectors: list[Collector] = [ServingCollector(sup.status, sup.replicas, running.scraper)]
    journal = getattr(app.state, "journal", None)  # None with metering off
    if settings.metrics and journal is not None:
        collectors.append(journal_lag.watch(journal))
    app.state.ops = Ops(
        readiness=Readiness(db, deployments, sup.status, migration_heads()),
        collectors=collectors,
        metrics_on=settings.metrics,
        token=settings.metrics_token,
        public=settings.metrics_public,
    )
    if settings.metrics_port is not None:
        running.servers.append(_ops_listener(app, settings, running))
    return running


def _ops_listener(app: FastAPI, settings: Settings, running: Running) -> object:
    """/metrics, /healthz, /readyz on their own port, without credentials."""
    import uvicorn

    ops_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    ops_app.state.ops = app.state.ops
    ops_app.state.ops_listener = True
    ops_app.include_router(router)

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield  # the main server owns SIGTERM/SIGINT; it stops us from its lifespan

    config = uvicorn.Config(
        ops_app,
        host=settings.host,
        port=settings.metrics_port or 0,
        log_level="warning",
        lifespan="off",
        access_log=False,
    )
    server = _Server(config)
    running.tasks.append(asyncio.create_task(server.serve(), name="ops-listener"))
    logger.info("metrics and health on http://%s:%s", settings.host, settings.metrics_port)
    return server
