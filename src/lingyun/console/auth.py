"""Sign-in, sign-out, first-start setup and the language switch."""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Request, Response

from lingyun.console import i18n
from lingyun.console.context import (
    BadForm,
    ConsoleRoute,
    check_form,
    lang_of,
    page_for,
    redirect,
    render,
)
from lingyun.console.security import (
    COOKIE_PATH,
    SESSION_COOKIE,
    clear_session,
    set_session,
)
from lingyun.console.setup import SetupGate
from lingyun.errors import AuthenticationError, InvalidRequestError
from lingyun.store.models import utcnow
from lingyun.tenancy.audit import Actor
from lingyun.tenancy.login_limit import LoginLimiter
from lingyun.tenancy.roles import Role
from lingyun.tenancy.users import UserService

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _safe_next(raw: str | None) -> str:
    """Only a path inside the console: never an open redirect."""
    if raw and raw.startswith("/console") and "//" not in raw and "\\" not in raw:
        return raw
    return "/console"


async def _sign_in(request: Request, email: str, password: str, next_url: str) -> Response:
    result = await UserService(request.app.state.db).login(
        email, password, f"console:{_ip(request)}"
    )
    response = redirect(_safe_next(next_url))
    max_age = max(1, int((result.expires_at - utcnow()).total_seconds()))
    set_session(response, request, result.token, max_age)
    return response


@router.get("/login")
async def login_page(request: Request, next: str = "/console") -> Response:
    return render(request, "login.html", next=_safe_next(next), email="", error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = await check_form(request)
    t = i18n.translator(lang_of(request))
    email, password = form.get("email", ""), form.get("password", "")
    next_url = _safe_next(form.get("next"))
    limiter: LoginLimiter = request.app.state.console_limiter
    wait = limiter.retry_after(email, _ip(request))
    if wait > 0:
        message = t("Too many sign-in attempts. Try again in {minutes} min.",
                    minutes=max(1, math.ceil(wait / 60)))  # fmt: skip
        return render(request, "login.html", status=429, next=next_url, email=email, error=message)
    try:
        response = await _sign_in(request, email, password, next_url)
    except AuthenticationError:
        limiter.failed(email, _ip(request))
        return render(request, "login.html", status=401, next=next_url, email=email,
                      error=t("Incorrect email or password."))  # fmt: skip
    limiter.succeeded(email)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await check_form(request)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await UserService(request.app.state.db).logout(token)
    response = redirect("/console/login")
    clear_session(response)
    return response


@router.get("/setup")
async def setup_page(request: Request, token: str = "") -> Response:
    gate: SetupGate = request.app.state.console_setup
    valid = gate.valid(token)
    return render(request, "setup.html", status=200 if valid else 404, valid=valid,
                  token=token if valid else "", email="", error=None)  # fmt: skip


@router.post("/setup")
async def setup(request: Request) -> Response:
    form = await check_form(request)
    gate: SetupGate = request.app.state.console_setup
    token = form.get("token", "")
    if not gate.valid(token):
        return render(request, "setup.html", status=404, valid=False, token="", email="",
                      error=None)  # fmt: skip
    users = UserService(request.app.state.db)
    if await users.list_users():  # someone made a user another way meanwhile
        gate.close()
        return render(request, "setup.html", status=404, valid=False, token="", email="",
                      error=None)  # fmt: skip
    email, password = form.get("email", ""), form.get("password", "")
    try:
        await users.create_user(email, password, role=Role.PLATFORM_ADMIN,
                                actor=Actor("setup", f"console:{_ip(request)}"))  # fmt: skip
    except InvalidRequestError as exc:
        return render(request, "setup.html", status=400, valid=True, token=token, email=email,
                      error=exc.message)  # fmt: skip
    gate.close()
    logger.info("first platform admin %s created through the setup link", email)
    return await _sign_in(request, email, password, "/console")


@router.get("/lang/{code}")
async def switch_language(request: Request, code: str, next: str = "/console") -> Response:
    if code not in i18n.LANGS:
        raise BadForm
    response = redirect(_safe_next(next))
    response.set_cookie(i18n.LANG_COOKIE, code, max_age=365 * 86400, path=COOKIE_PATH,
                        samesite="lax")  # fmt: skip
    return response


__all__ = ["page_for", "router"]
