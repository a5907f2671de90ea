"""The Lingyun server: wires store, supervisor and gateway pipeline into one ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
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
from lingyun.gateway.settle import Settler
from lingyun.metering.admission import BillingAdmission
from lingyun.metering.deliveries import DeliveryLog, delivery_path
from lingyun.metering.journal import Journal
from lingyun.metering.pricing import PriceBook
from lingyun.metering.usage_writer import UsageWriter
from lingyun.observability import setup as observability
from lingyun.protocol.errors import install_error_handlers
from lingyun.serving.adapters import AdapterStore, attach
from lingyun.serving.channels import ChannelRegistry
from lingyun.serving.channels.keeper import ChannelKeeper
from lingyun.serving.deployments import DeploymentStore, merge
from lingyun.serving.factory import make_supervisor
from lingyun.serving.supervisor import Supervisor
from lingyun.store import outage
from lingyun.store.db import Database
from lingyun.tenancy.runtime import TenancyRuntime
from lingyun.tenancy.service import TenancyService

logger = logging.getLogger(__name__)

# How often a running server picks up deployments added with `lingyun deploy`.
DEPLOYMENT_POLL_S = 5.0


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url())
        await db.migrate()
        store = DeploymentStore(db)
        deployments = attach(
            merge(settings.deployments(), await store.list()), await AdapterStore(db).list()
        )
        tenancy = TenancyRuntime(db)  # grant cache + batched key last-used writes
        await tenancy.start()
        app.state.tenancy = tenancy
        catalog = ModelCatalog(access=tenancy.access)
        catalog.replace(deployments)
        channels = ChannelRegistry()
        channels.apply(deployments)
        app.state.channels = channels
        supervisor = make_supervisor(settings, db)  # local or Ray; one owner per deployment
        writer = UsageWriter(db)
        relay = Relay(timeout_s=settings.upstream_timeout_s)
        # Rate limits first: a request refused for its rate reserves no money.
        control = AdmissionControl.from_settings(settings, db, supervisor)
        await control.start()
        policies: list[Admission] = [control.policy]
        journal: Journal | None = None
        prices = PriceBook()
        if settings.metering:
            journal = Journal(
                db,
                owner=settings.instance_owner(),
                deliveries=DeliveryLog(delivery_path(settings)),
            )
            await prices.load(db)
            await journal.start()  # reconciles what our previous life left open
            policies.append(BillingAdmission(journal, prices))
        app.state.journal = journal
        app.state.db = db
        app.state.supervisor = supervisor
        app.state.started_at = time.time()
        app.state.gateway = Gateway(
            authenticator=Authenticator(TenancyService(db).lookup_key, on_use=tenancy.key_used),
            catalog=catalog,
            admission=AdmissionChain(policies),
            queue=control.queue,
            router=RouterChain(),
            relay=relay,
            settler=Settler(writer),
            replicas=supervisor,
            max_body_bytes=settings.max_body_bytes,
            retry_budget=RetryBudget(settings.retry_budget_ratio, settings.retry_budget_min_per_s),
            activation_timeout_s=settings.activation_timeout_s,
            channels=channels,
        )
        writer.start()
        await supervisor.start(deployments)
        ops = await observability.start(app, settings, db, supervisor, catalog.deployments)
        keeper = ChannelKeeper(channels, db)
        keeper.start()
        batch_plane = BatchPlane.build(settings, db, app.state.gateway)
        app.state.files, app.state.batches = batch_plane.files, batch_plane.service
        await batch_plane.start()  # after the journal reconciled: resumes interrupted batches
        poller = asyncio.create_task(
            _follow_deployments(settings, store, catalog, supervisor, channels)
        )
        price_poller = asyncio.create_task(_refresh(prices.load, db))
        logger.info("serving %d deployment(s): %s", len(deployments), [d.name for d in deployments])
        await console.start(app, db, settings.host, settings.port, [d.name for d in deployments])
        try:
            yield
        finally:
            await batch_plane.stop()
            for task in (poller, price_poller):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await keeper.stop()
            await ops.stop()
            await supervisor.stop()
            await relay.close()
            await control.stop()
            if journal is not None:
                await journal.stop()
            await writer.stop()
            await tenancy.stop()
            await db.close()

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


async def _refresh(load: Callable[[Database], Awaitable[None]], db: Database) -> None:
    """Reload something small (prices) every second, so CLI changes apply at once."""
    while True:
        await asyncio.sleep(1.0)
        try:
            await load(db)
        except Exception:
            logger.exception("refresh failed; keeping the previous values")


async def _follow_deployments(
    settings: Settings,
    store: DeploymentStore,
    catalog: ModelCatalog,
    sup: Supervisor,
    channels: ChannelRegistry,
) -> None:
    current = catalog.deployments()
    while True:
        await asyncio.sleep(DEPLOYMENT_POLL_S)
        try:
            wanted = attach(
                merge(settings.deployments(), await store.list()),
                await AdapterStore(store.db).list(),
            )
            if wanted != current:
                await sup.apply(wanted)
                catalog.replace(wanted)
                channels.apply(wanted)
                current = wanted
                logger.info("deployments changed: %s", [d.name for d in wanted])
        except Exception:
            logger.exception("could not apply stored deployments")
