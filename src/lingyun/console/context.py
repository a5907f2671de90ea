"""What every console page knows: who is signed in, in which language, for which tenant.

Pages never read tables: they ask the same services as ``/admin/v1`` and the CLI, and the
same :class:`~lingyun.tenancy.roles.Principal` decides what is visible (404 otherwise) and
what may change (403).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

from lingyun import __version__
from lingyun.console import i18n
from lingyun.console.security import (
    SECURITY_HEADERS,
    SESSION_COOKIE,
    attach_csrf_cookie,
    csrf_ok,
    csrf_token,
)
from lingyun.errors import (
    AuthenticationError,
    InvalidRequestError,
    LingyunError,
    NotFoundError,
    PermissionDeniedError,
)
from lingyun.store.db import Database
from lingyun.store.models import Tenant
from lingyun.tenancy.audit import Actor
from lingyun.tenancy.roles import Principal, not_found
from lingyun.tenancy.service import TenancyService
from lingyun.tenancy.users import UserService

logger = logging.getLogger(__name__)

HERE = Path(__file__).parent
env = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to the sign-in page."""


class NoTenant(LingyunError):
    """A tenant page for someone who belongs to no tenant (a new platform admin)."""

    status_code = 404


class BadForm(Exception):
    """A state change without a valid CSRF token or from another origin."""


def lang_of(request: Request) -> str:
    return i18n.pick(request.cookies.get(i18n.LANG_COOKIE), request.headers.get("accept-language"))


def money(value: Decimal) -> str:
    """An amount for people: at least two decimals, no trailing zeros past them."""
    text = f"{value:.9f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


env.globals["money"] = money


def render(request: Request, template: str, status: int = 200, **values: Any) -> HTMLResponse:
    lang = lang_of(request)
    page: Page | None = values.get("page")
    html = env.get_template(template).render(
        request=request, lang=lang, t=i18n.translator(lang), csrf=csrf_token(request),
        version=__version__, path=request.url.path, **values,
    )  # fmt: skip
    response = HTMLResponse(html, status_code=status)
    if page is not None and page.tenant is not None:
        response.headers["X-Lingyun-Tenant"] = page.tenant.id
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@dataclass
class Page:
    """One signed-in request: the principal, its visible tenants, the tenant shown."""

    request: Request
    principal: Principal
    db: Database
    tenants: list[Tenant] = field(default_factory=list)
    tenant: Tenant | None = None

    @property
    def actor(self) -> Actor:
        ip = self.request.client.host if self.request.client else "unknown"
        return Actor(self.principal.email, f"console:{ip}", self.principal.user_id)

    @property
    def tenancy(self) -> TenancyService:
        return TenancyService(self.db)

    def require_tenant(self) -> Tenant:
        if self.tenant is None:
            raise NoTenant("No tenant yet.")
        return self.tenant

    def url(self, path: str, **query: str) -> str:
        """A console link that keeps the tenant shown."""
        params = dict(query)
        if self.tenant is not None:
            params.setdefault("tenant", self.tenant.id)
        qs = "&".join(f"{k}={v}" for k, v in params.items() if v)
        return f"/console{path}" + (f"?{qs}" if qs else "")


async def page_for(request: Request) -> Page:
    """The signed-in page context, or :class:`SignInRequired`."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    db: Database = request.app.state.db
    try:
        principal = await UserService(db).authenticate(token)
    except AuthenticationError:
        raise SignInRequired from None
    tenancy = TenancyService(db)
    if principal.is_platform_admin:
        tenants = await tenancy.list_tenants()
    else:
        tenants = [await tenancy.tenant_by_id(tid) for tid in sorted(principal.tenant_ids())]
        tenants.sort(key=lambda t: t.name)
    wanted = request.query_params.get("tenant")
    if wanted is None and request.method == "POST":
        wanted = (await request.form()).get("tenant")  # type: ignore[assignment]
    chosen: Tenant | None = tenants[0] if tenants else None
    if wanted:
        principal.require_tenant_visible(str(wanted))
        chosen = next((t for t in tenants if t.id == wanted), None)
        if chosen is None:
            raise not_found("tenant", str(wanted))
    return Page(request, principal, db, tenants, chosen)


async def check_form(request: Request) -> dict[str, str]:
    """The submitted form, after the CSRF check every state change passes."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_ok(request, values.get("csrf")):
        raise BadForm
    if any("\x00" in v for v in values.values()):
        raise InvalidRequestError("Form fields may not contain NUL characters.")
    return values


def _error_page(request: Request, status: int, message: str, create: str = "") -> Response:
    return render(request, "error.html", status=status, message=message, create=create)


class ConsoleRoute(APIRoute):
    """Console routes answer HTML: errors become pages, every response carries the CSP."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            t = i18n.translator(lang_of(request))
            try:
                response = await handler(request)
            except SignInRequired:
                response = redirect(f"/console/login?next={request.url.path}")
            except BadForm:
                response = _error_page(
                    request, 403, t("The form expired. Reload the page and try again.")
                )
            except NotFoundError:
                response = _error_page(request, 404, t("Not found."))
            except PermissionDeniedError:
                response = _error_page(request, 403, t("You may not do this."))
            except NoTenant:
                response = _error_page(request, 404, t("No tenant yet."), t("Create tenant"))
            except LingyunError as exc:
                response = _error_page(request, exc.status_code, exc.message)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            attach_csrf_cookie(request, response)
            return response

        return route
