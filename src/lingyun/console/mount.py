"""Mount the console on the app (``install``) and open it at start-up (``start``)."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from lingyun.console import auth, keys, members, ops, ops_platform, ops_tenant, tenant
from lingyun.console.context import HERE
from lingyun.console.setup import SetupGate, banner, print_banner
from lingyun.serving import worker_env
from lingyun.store.db import Database
from lingyun.tenancy.login_limit import LoginLimiter

router = APIRouter()
for _module in (auth, keys, members, tenant, ops, ops_tenant, ops_platform):
    router.include_router(_module.router)


def install(app: FastAPI) -> None:
    app.state.console_setup = SetupGate()
    app.state.console_limiter = LoginLimiter()
    app.mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")
    app.include_router(router)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title="Lingyun API",
            swagger_js_url="/console/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/console/static/swagger/swagger-ui.css",
            swagger_favicon_url="data:,",
        )  # fmt: skip

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)


async def start(app: FastAPI, db: Database, host: str, port: int, models: list[str]) -> None:
    gate: SetupGate = app.state.console_setup
    token = await gate.open_if_empty(db)
    if worker_env.slot() in (None, 0):  # one banner, however many workers
        print_banner(banner(host, port, token, models))


__all__ = ["install", "router", "start"]
