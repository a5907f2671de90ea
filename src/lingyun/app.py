"""The Lingyun server: wires store, supervisor and gateway pipeline into one ASGI app."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lingyun import __version__
from lingyun.admission import AdmissionControl
from lingyun.api.admin.router import router as admin_router
from lingyun.api.body_limit import FRAMING_BYTES, BodyLimitMiddleware, BodyLimits
from lingyun.api.control_rate import AddressBuckets, ControlRateMiddleware
from lingyun.api.health import router as health_router
from lingyun.api.openai.batches.router import router as batches_router
from lingyun.api.openai.files.router import router as files_router
from lingyun.api.openai.routes import router as openai_router
from lingyun.api.openai.usage import router as usage_router
from lingyun.batch.app import BatchPlane
from lingyun.config import Settings
from lingyun.console import mount as console
from lingyun.gateway.admit import Admission, AdmissionChain
from lingyun.gateway.authenticate import Authenticator
from lingyun.gateway.failover import RetryBudget
from lingyun.gateway.pipeline import Gateway
from lingyun.gateway.relay import Relay
from lingyun.gateway.resolve import ModelCatalog
from lingyun.gateway.route import RouterChain
from lingyun.gateway.routing.load import EngineLoad
from lingyun.gateway.settle import Settler
from lingyun.lifecycle import Lifecycle
from lingyun.metering.admission import BillingAdmission
from lingyun.metering.deliveries import DeliveryLog, delivery_path
from lingyun.metering.journal import Journal
from lingyun.metering.pricing import PriceBook
from lingyun.metering.usage_writer import UsageWriter
from lingyun.observability import setup as observability
from lingyun.protocol.errors import install_error_handlers
from lingyun.serving import worker_env
from lingyun.serving.adapters import AdapterStore, attach
from lingyun.serving.channels import ChannelRegistry
from lingyun.serving.channels.keeper import ChannelKeeper
from lingyun.serving.deployments import DeploymentStore, merge
from lingyun.serving.factory import make_supervisor
from lingyun.serving.pool import PooledSupervisor
from lingyun.serving.supervisor import Supervisor
from lingyun.store import outage
from lingyun.store.changes import ChangeFeed
from lingyun.store.db import Database
from lingyun.tenancy.runtime import TenancyRuntime
from lingyun.tenancy.service import TenancyService

logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Lifecycle() as life:
            await _start(app, settings, life)
            yield

    # FastAPI's built-in telemetry reads the environment on every request (~6% of gateway CPU).
    app = FastAPI(
        title="Lingyun",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # served by the console from local assets (no CDN)
        redoc_url=None,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app, [outage.as_service_error])  # the database away: 503
    if (slot := worker_env.slot()) is not None:  # one of `serve --workers N`: say which
        app.add_middleware(worker_env.WorkerHeaderMiddleware, worker_slot=slot)
    _install_edges(app, settings)
    observability.install(app, settings)  # request ids, /metrics, /healthz, /readyz
    app.include_router(openai_router)
    app.include_router(usage_router)
    app.include_router(files_router)
    app.include_router(batches_router)
    app.include_router(admin_router)
    console.install(app)  # /console pages and assets; / redirects there

    app.include_router(health_router)
    app.state.health_token = settings.health_token

    return app


async def _start(app: FastAPI, settings: Settings, life: Lifecycle) -> None:
    """Every part in dependency order; ``life`` stops them in reverse, whatever fails."""
    db = Database(settings.resolved_database_url())
    await life.start("database", db.migrate, db.close)
    # Baseline first: what changes while the parts below load is applied once they run.
    feed = ChangeFeed(db)
    await life.start("change feed", feed.start, feed.stop)
    app.state.feed = feed
    store = DeploymentStore(db)
    deployments = attach(
        merge(settings.deployments(), await store.list()), await AdapterStore(db).list()
    )
    tenancy = TenancyRuntime(db, feed)  # grant cache + batched key last-used writes
    await life.start("tenancy", tenancy.start, tenancy.stop)
    app.state.tenancy = tenancy
    catalog = ModelCatalog(access=tenancy.access)
    catalog.replace(deployments)
    channels = ChannelRegistry()
    channels.apply(deployments)
    app.state.channels = channels
    supervisor = make_supervisor(settings, db)  # local or Ray; one owner per deployment
    writer = UsageWriter(db)
    await life.start("usage writer", _sync(writer.start), writer.stop)
    relay = Relay(timeout_s=settings.upstream_timeout_s)
    await life.start("relay", None, relay.close)
    # Rate limits first: a request refused for its rate reserves no money.
    control = AdmissionControl.from_settings(settings, db, supervisor, feed)
    await life.start("admission", control.start, control.stop)
    policies: list[Admission] = [control.policy]
    journal: Journal | None = None
    prices = PriceBook()
    if settings.metering:
        journal = Journal(
            db, owner=settings.instance_owner(), deliveries=DeliveryLog(delivery_path(settings))
        )
        await prices.load(db)
        await life.start("journal", journal.start, journal.stop)  # reconciles our last life
        feed.subscribe("billing-scopes", journal.load_scopes)  # budgets, free quotas
        policies.append(BillingAdmission(journal, prices))
    app.state.journal = journal
    app.state.db = db
    app.state.supervisor = supervisor
    app.state.started_at = time.time()
    engine_load = EngineLoad()  # scored by engines' own signals once they are scraped
    app.state.gateway = Gateway(
        authenticator=Authenticator(TenancyService(db).lookup_key, on_use=tenancy.key_used),
        catalog=catalog,
        admission=AdmissionChain(policies),
        queue=control.queue,
        router=RouterChain(load=engine_load),
        relay=relay,
        settler=Settler(writer),
        replicas=supervisor,
        max_body_bytes=settings.max_body_bytes,
        retry_budget=RetryBudget(settings.retry_budget_ratio, settings.retry_budget_min_per_s),
        activation_timeout_s=settings.activation_timeout_s,
        channels=channels,
    )
    await life.start("supervisor", lambda: supervisor.start(deployments), supervisor.stop)
    ops = await observability.start(app, settings, db, supervisor, catalog.deployments)
    await life.start("observability", None, ops.stop)
    if ops.scraper is not None:
        engine_load.attach(ops.scraper.signals)
        if isinstance(supervisor, PooledSupervisor):
            supervisor.signals = ops.scraper.of
    keeper = ChannelKeeper(channels, db, feed)
    await life.start("channel keeper", _sync(keeper.start), keeper.stop)
    batch_plane = BatchPlane.build(settings, db, app.state.gateway, feed)
    app.state.files, app.state.batches = batch_plane.files, batch_plane.service
    # After the journal reconciled: resumes interrupted batches.
    await life.start("batch plane", batch_plane.start, batch_plane.stop)
    follow = DeploymentFollower(settings, store, catalog, supervisor, channels)
    feed.subscribe("deployments", follow.step)  # `lingyun deploy` / `undeploy`
    feed.subscribe("prices", lambda: prices.load(db))  # `lingyun price`
    # Last to start, first to stop: no reload reaches a part that has stopped.
    await life.start("change watcher", _sync(feed.follow), feed.unfollow)
    logger.info("serving %d deployment(s): %s", len(deployments), [d.name for d in deployments])
    await console.start(app, db, settings.host, settings.port, [d.name for d in deployments])


def _install_edges(app: FastAPI, settings: Settings) -> None:
    """Bounds on every route: body sizes, and the control plane's rate per address."""
    control = settings.admin_max_body_bytes
    limits = BodyLimits(
        settings.max_body_bytes,
        [("/v1/files", settings.batch_max_file_bytes + FRAMING_BYTES),
         ("/admin", control), ("/console", control)],
    )  # fmt: skip
    app.add_middleware(BodyLimitMiddleware, limits=limits)
    buckets = AddressBuckets(settings.control_rate_per_s, settings.control_burst)
    app.add_middleware(ControlRateMiddleware, buckets=buckets)


def _sync(start: Callable[[], object]) -> Callable[[], Awaitable[None]]:
    """A part whose start is a plain call (it only creates its tasks)."""

    async def run() -> None:
        start()

    return run


class DeploymentFollower:
    """Applies deployments added or removed with ``lingyun deploy`` to a running server."""

    def __init__(
        self,
        settings: Settings,
        store: DeploymentStore,
        catalog: ModelCatalog,
        sup: Supervisor,
        channels: ChannelRegistry,
    ) -> None:
        self.settings, self.store, self.catalog = settings, store, catalog
        self.sup, self.channels = sup, channels
        self.current = catalog.deployments()

    async def step(self) -> None:
        wanted = attach(
            merge(self.settings.deployments(), await self.store.list()),
            await AdapterStore(self.store.db).list(),
        )
        if wanted != self.current:
            await self.sup.apply(wanted)
            self.catalog.replace(wanted)
            self.channels.apply(wanted)
            self.current = wanted
            logger.info("deployments changed: %s", [d.name for d in wanted])
