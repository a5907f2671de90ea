"""Wire models of ``/admin/v1``: ``…Request`` (``extra="forbid"``: unknown fields, such as a
smuggled ``tenant_id``, are refused) and ``…Response``.

Requests never carry a tenant id: tenant-scoped routes take it from the path, where the
caller's right to it is checked. Strings are bounded and free of control characters so that
no value can fail in the database instead of in validation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from lingyun.tenancy.priority import Priority
from lingyun.tenancy.roles import Role

T = TypeVar("T")

ID_PATTERN = r"^[A-Za-z0-9_]{1,64}$"
IdPath = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]
Id = Annotated[str, Field(pattern=ID_PATTERN, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
Label = Annotated[str, Field(max_length=128, pattern=r"^[^\x00-\x1f\x7f]*$")]
Email = Annotated[
    str, Field(min_length=5, max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00.]+(\.[^@\s\x00.]+)+$")
]
Password = Annotated[str, Field(min_length=1, max_length=1024, pattern=r"^[^\x00]*$")]
NewPassword = Annotated[str, Field(min_length=8, max_length=1024, pattern=r"^[^\x00]*$")]
ModelName = Annotated[
    str, Field(min_length=1, max_length=256, pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9._:/@-]*)$")
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListResponse(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]


# -- auth ----------------------------------------------------------------------------------
class LoginRequest(_Request):
    email: Email
    password: Password


class BindingResponse(BaseModel):
    id: str | None = None
    user_id: str | None = None
    role: Role
    tenant_id: str | None
    project_id: str | None


class MeResponse(BaseModel):
    user_id: str
    email: str
    platform_admin: bool
    bindings: list[BindingResponse]


class LoginResponse(BaseModel):
    token: str = Field(description="Send as 'Authorization: Bearer TOKEN'. Shown once.")
    expires_at: datetime
    user: MeResponse


# -- tenants and projects ------------------------------------------------------------------
class TenantCreateRequest(_Request):
    name: Name
    weight: float = Field(default=1.0, gt=0, le=1e6)


class TenantUpdateRequest(_Request):
    weight: float | None = Field(default=None, gt=0, le=1e6)
    free_only: bool | None = Field(
        default=None, description="Spend free quota only, never the balance."
    )


class TenantResponse(BaseModel):
    id: str
    name: str
    weight: float
    created_at: datetime


class ProjectCreateRequest(_Request):
    name: Name


class ProjectResponse(BaseModel):
    id: str
    tenant_id: str
    name: str
    created_at: datetime
    priority: Priority | None = None
    # Prompt logging: seconds prompts and completions are kept; null = off (never stored).
    prompt_log_retention_seconds: int | None = None


class PromptLoggingRequest(_Request):
    """Turn a project's prompt logging on (``enabled`` with a retention) or off."""

    enabled: bool
    retention_seconds: int | None = Field(default=None, gt=0)


class PriorityUpdateRequest(_Request):
    """A project's or key's capacity-queue band; null clears it (project's, else standard)."""

    priority: Priority | None


# -- keys ----------------------------------------------------------------------------------
class KeyCreateRequest(_Request):
    name: Label = ""
    expires_at: AwareDatetime | None = None
    models: Annotated[
        list[ModelName] | None,
        Field(max_length=256, description="Models this key may call (of those granted); "
              "null: every granted model."),
    ] = None  # fmt: skip


class KeyResponse(BaseModel):
    """A key as listed: never its secret."""

    id: str
    tenant_id: str
    project_id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    priority: Priority | None = None
    models: list[str] | None = None


class CreatedKeyResponse(KeyResponse):
    key: str = Field(description="The secret. Shown once; only its hash is stored.")


# -- users and roles -----------------------------------------------------------------------
class UserCreateRequest(_Request):
    """Platform admins only: a user with no tenant, optionally a platform admin."""

    email: Email
    password: NewPassword
    platform_admin: bool = False


class TenantUserCreateRequest(_Request):
    """A new user of this tenant with a first role (project roles need ``project_id``)."""

    email: Email
    password: NewPassword
    role: Literal["tenant_admin", "project_admin", "member", "viewer"]
    project_id: Id | None = None


class UserResponse(BaseModel):
    id: str
    email: str
    created_at: datetime
    disabled: bool


class RoleBindingCreateRequest(_Request):
    user_id: Id
    role: Literal["tenant_admin", "project_admin", "member", "viewer"]
    project_id: Id | None = None


# -- model grants, audit, usage, models ------------------------------------------
class ModelGrantCreateRequest(_Request):
    model: ModelName
    project_id: Id | None = None


class ModelGrantResponse(BaseModel):
    id: str
    tenant_id: str
    project_id: str | None
    model: str
    created_at: datetime


class AuditEventResponse(BaseModel):
    id: int
    created_at: datetime
    actor: str
    actor_user_id: str | None
    source: str
    action: str
    tenant_id: str | None
    project_id: str | None
    target_type: str
    target_id: str
    details: dict[str, Any]


class ModelResponse(BaseModel):
    id: str
    engine: str | None = None
    aliases: list[str] = Field(default_factory=list)
