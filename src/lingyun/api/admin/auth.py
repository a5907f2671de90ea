"""``/admin/v1/auth``: log in with a password for a bearer token; who am I; log out."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from lingyun.api.admin import convert
from lingyun.api.admin.deps import AdminCtx, client_ip
from lingyun.api.admin.schemas import LoginRequest, LoginResponse, MeResponse
from lingyun.tenancy.users import UserService

router = APIRouter(prefix="/auth", tags=["admin: auth"])


@router.post("/login", response_model=LoginResponse)
async def login(body: LoginRequest, request: Request) -> LoginResponse:
    result = await UserService(request.app.state.db).login(
        body.email, body.password, client_ip(request)
    )
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
