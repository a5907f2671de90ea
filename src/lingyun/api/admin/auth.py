"""``/admin/v1/auth``: log in with a password for a bearer token; who am I; log out."""

from __future__ import annotations

import math

from fastapi import APIRouter, Request, Response

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx, client_ip
from lingyun.api.admin.schemas import LoginRequest, LoginResponse, MeResponse
from lingyun.errors import AuthenticationError, RateLimitError
from lingyun.tenancy.login_limit import LoginLimiter
from lingyun.tenancy.users import UserService

router = APIRouter(prefix="/auth", tags=["admin: auth"])


@router.post("/login", response_model=LoginResponse)
async def login(body: LoginRequest, request: Request) -> LoginResponse:
    """Failed tries count against the console's limit too: one guesser, one budget."""
    limiter: LoginLimiter = request.app.state.console_limiter
    ip = client_ip(request)
    wait = limiter.retry_after(body.email, ip)
    if wait > 0:
        raise RateLimitError(
            "Too many sign-in attempts; try again later.",
            code="too_many_login_attempts",
            headers={"Retry-After": str(math.ceil(wait))},
        )
    try:
        result = await UserService(request.app.state.db).login(body.email, body.password, ip)
    except AuthenticationError:
        limiter.failed(body.email, ip)
        raise
    limiter.succeeded(body.email)
    return LoginResponse(
        token=result.token, expires_at=result.expires_at, user=convert.me(result.principal)
    )


@router.get("/me", response_model=MeResponse)
async def me(ctx: AdminCtx) -> MeResponse:
    return convert.me(ctx.principal)


@router.post("/logout", status_code=204, response_class=Response)
async def logout(ctx: AdminCtx) -> Response:
    header = ctx.request.headers.get("authorization", "")
    await ctx.users.logout(header.partition(" ")[2].strip())
    return Response(status_code=204)
