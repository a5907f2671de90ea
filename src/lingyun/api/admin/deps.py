"""Dependencies of the admin routes: the caller (from its bearer token), its audit identity,
and the services, all over the app's one database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lingyun.errors import AuthenticationError
from lingyun.store.db import Database
from lingyun.store.models import ApiKey, Project, Tenant
from lingyun.tenancy.audit import Actor
from lingyun.tenancy.grants import GrantService
from lingyun.tenancy.roles import Principal, not_found
from lingyun.tenancy.service import TenancyService
from lingyun.tenancy.users import UserService

bearer = HTTPBearer(auto_error=False, description="A token from POST /admin/v1/auth/login.")


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@dataclass
class Ctx:
    """One admin request: who calls, from where, and the services it may use."""

    request: Request
    principal: Principal
    db: Database

    @property
    def actor(self) -> Actor:
        return Actor(self.principal.email, client_ip(self.request), self.principal.user_id)

    @property
    def tenancy(self) -> TenancyService:
        return TenancyService(self.db)

    @property
    def users(self) -> UserService:
        return UserService(self.db)

    @property
    def grants(self) -> GrantService:
        return GrantService(self.db)

    async def visible_tenant(self, tenant_id: str) -> Tenant:
        self.principal.require_tenant_visible(tenant_id)
        return await self.tenancy.tenant_by_id(tenant_id)

    async def visible_project(self, project_id: str) -> Project:
        project = await self.tenancy.project_by_id(project_id)
        self.principal.require_project_visible(project.tenant_id, project.id)
        return project

    async def visible_key(self, key_id: str) -> ApiKey:
        key = await self.tenancy.key_by_id(key_id)
        if not self.principal.can_see_project(key.tenant_id, key.project_id):
            raise not_found("key", key_id)
        return key

    def keys_changed(self) -> None:
        """Drop this gateway's key cache now (other gateways follow within its TTL)."""
        gateway = getattr(self.request.app.state, "gateway", None)
        if gateway is not None:
            gateway.authenticator.invalidate()

    async def grants_changed(self) -> None:
        runtime = getattr(self.request.app.state, "tenancy", None)
        if runtime is not None:
            await runtime.refresh_grants()


async def _ctx(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Ctx:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationError(
            "Send an admin token as 'Authorization: Bearer TOKEN' (POST /admin/v1/auth/login).",
            code="invalid_token",
        )
    db: Database = request.app.state.db
    principal = await UserService(db).authenticate(credentials.credentials)
    return Ctx(request, principal, db)


AdminCtx = Annotated[Ctx, Depends(_ctx)]
