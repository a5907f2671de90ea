"""Users, their role bindings, and admin sessions (login with a password, get a token).

Passwords are hashed with argon2id at OWASP's recommended setting (19 MiB, 2 passes, 1 lane;
older hashes are upgraded at login) in a worker thread, so hashing never stalls the event
loop. A login for an unknown email still verifies against a dummy hash so response time does
not reveal which emails exist.
Session tokens carry 256 random bits and are stored as SHA-256, like API keys.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lingyun.errors import AuthenticationError, InvalidRequestError
from lingyun.store.access import AdminSession, RoleBinding, User
from lingyun.store.db import Database
from lingyun.store.models import Project, new_id, utcnow
from lingyun.tenancy.audit import SYSTEM_ACTOR, Actor, record
from lingyun.tenancy.roles import Binding, Principal, Role, not_found, validate_scope

TOKEN_PREFIX = "ly-adm-"
SESSION_TTL = timedelta(hours=12)
MIN_PASSWORD = 8

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class LoginResult:
    token: str  # shown once, stored hashed
    expires_at: datetime
    principal: Principal


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 320:
        raise InvalidRequestError("Not a valid email address.", param="email")
    return email


class UserService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_user(
        self,
        email: str,
        password: str,
        *,
        actor: Actor = SYSTEM_ACTOR,
        role: Role | None = None,
        tenant_id: str | None = None,
        project_id: str | None = None,
    ) -> User:
        """A new user, optionally with a first role binding, in one transaction."""
        email = normalize_email(email)
        if len(password) < MIN_PASSWORD:
            raise InvalidRequestError(
                f"Passwords need at least {MIN_PASSWORD} characters.", param="password"
            )
        if role is not None:
            validate_scope(role, tenant_id, project_id)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        user = User(id=new_id("usr"), email=email, password_hash=hashed)
        async with self.db.session() as s:
            s.add(user)
            record(s, actor, "user.create", target_type="user", target_id=user.id,
                   tenant_id=tenant_id, details={"email": email})  # fmt: skip
            try:
                await s.flush()
            except IntegrityError:
                raise InvalidRequestError(
                    "A user with this email already exists.", param="email", code="conflict"
                ) from None
            if role is not None:
                await self._bind(s, actor, user.id, role, tenant_id, project_id)
            await s.commit()
        return user

    async def user_by_id(self, user_id: str) -> User:
        async with self.db.session() as s:
            user = await s.get(User, user_id)
        if user is None:
            raise not_found("user", user_id)
        return user

    async def user_by_email(self, email: str) -> User:
        async with self.db.session() as s:
            user = await s.scalar(select(User).where(User.email == normalize_email(email)))
        if user is None:
            raise not_found("user", email)
        return user

    async def list_users(self, tenant_id: str | None = None) -> list[User]:
        """Every user, or those with a binding in ``tenant_id``."""
        query = select(User).order_by(User.email)
        if tenant_id is not None:
            bound = select(RoleBinding.user_id).where(RoleBinding.tenant_id == tenant_id)
            query = query.where(User.id.in_(bound))
        async with self.db.session() as s:
            return list((await s.scalars(query)).all())

    async def bindings(
        self, *, user_id: str | None = None, tenant_id: str | None = None
    ) -> list[RoleBinding]:
        query = select(RoleBinding).order_by(RoleBinding.created_at)
        if user_id is not None:
            query = query.where(RoleBinding.user_id == user_id)
        if tenant_id is not None:
            query = query.where(RoleBinding.tenant_id == tenant_id)
        async with self.db.session() as s:
            return list((await s.scalars(query)).all())

    async def binding_by_id(self, binding_id: str) -> RoleBinding:
        async with self.db.session() as s:
            row = await s.get(RoleBinding, binding_id)
        if row is None:
            raise not_found("role_binding", binding_id)
        return row

    async def bind(
        self,
        user_id: str,
        role: Role,
        tenant_id: str | None = None,
        project_id: str | None = None,
        *,
        actor: Actor = SYSTEM_ACTOR,
    ) -> RoleBinding:
        validate_scope(role, tenant_id, project_id)
        async with self.db.session() as s:
            if await s.get(User, user_id) is None:
                raise not_found("user", user_id)
            row = await self._bind(s, actor, user_id, role, tenant_id, project_id)
            await s.commit()
        return row

    async def _bind(
        self,
        s: AsyncSession,
        actor: Actor,
        user_id: str,
        role: Role,
        tenant_id: str | None,
        project_id: str | None,
    ) -> RoleBinding:
        if project_id is not None:
            project = await s.get(Project, project_id)
            if project is None or project.tenant_id != tenant_id:
                raise not_found("project", project_id)
        existing = await s.scalar(
            select(RoleBinding).where(
                RoleBinding.user_id == user_id,
                RoleBinding.role == role.value,
                RoleBinding.tenant_id.is_(None)
                if tenant_id is None
                else RoleBinding.tenant_id == tenant_id,
                RoleBinding.project_id.is_(None)
                if project_id is None
                else RoleBinding.project_id == project_id,
            )
        )
        if existing is not None:
            return existing
        row = RoleBinding(
            id=new_id("rb"), user_id=user_id, role=role.value, tenant_id=tenant_id,
            project_id=project_id,
        )  # fmt: skip
        s.add(row)
        record(s, actor, "role_binding.create", target_type="role_binding", target_id=row.id,
               tenant_id=tenant_id, project_id=project_id,
               details={"user_id": user_id, "role": role.value})  # fmt: skip
        await s.flush()
        return row

    async def unbind(self, binding_id: str, *, actor: Actor = SYSTEM_ACTOR) -> None:
        async with self.db.session() as s:
            row = await s.get(RoleBinding, binding_id)
            if row is None:
                raise not_found("role_binding", binding_id)
            await s.execute(delete(RoleBinding).where(RoleBinding.id == binding_id))
            record(s, actor, "role_binding.delete", target_type="role_binding",
                   target_id=binding_id, tenant_id=row.tenant_id, project_id=row.project_id,
                   details={"user_id": row.user_id, "role": row.role})  # fmt: skip
            await s.commit()

    # -- sessions -----------------------------------------------------------------------
    async def login(self, email: str, password: str, source: str) -> LoginResult:
        failed = AuthenticationError("Incorrect email or password.", code="invalid_credentials")
        try:
            email = normalize_email(email)
        except InvalidRequestError:
            email = ""
        async with self.db.session() as s:
            user = await s.scalar(select(User).where(User.email == email)) if email else None
        stored = user.password_hash if user else _dummy_hash()
        if not await asyncio.to_thread(_verify, stored, password) or user is None:
            raise failed
        if user.disabled_at is not None:
            raise failed
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        expires_at = utcnow() + SESSION_TTL
        actor = Actor(user.email, source, user.id)
        async with self.db.session() as s:
            if _hasher.check_needs_rehash(user.password_hash):
                await s.execute(
                    update(User)
                    .where(User.id == user.id)
                    .values(password_hash=await asyncio.to_thread(_hasher.hash, password))
                )
            s.add(AdminSession(id=new_id("ses"), user_id=user.id, token_hash=_token_hash(token),
                               source=source[:64], expires_at=expires_at))  # fmt: skip
            record(s, actor, "session.create", target_type="user", target_id=user.id)
            await s.commit()
        return LoginResult(token, expires_at, await self.principal(user.id, user.email))

    async def logout(self, token: str) -> None:
        async with self.db.session() as s:
            await s.execute(
                update(AdminSession)
                .where(AdminSession.token_hash == _token_hash(token))
                .values(revoked_at=utcnow())
            )
            await s.commit()

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a session token, or 401."""
        async with self.db.session() as s:
            row = (
                await s.execute(
                    select(AdminSession, User)
                    .join(User, User.id == AdminSession.user_id)
                    .where(AdminSession.token_hash == _token_hash(token))
                )
            ).first()
        if row is None:
            raise AuthenticationError("Invalid or expired admin token.", code="invalid_token")
        session, user = row
        if (
            session.revoked_at is not None
            or session.expires_at <= utcnow()
            or user.disabled_at is not None
        ):
            raise AuthenticationError("Invalid or expired admin token.", code="invalid_token")
        return await self.principal(user.id, user.email)

    async def principal(self, user_id: str, email: str) -> Principal:
        rows = await self.bindings(user_id=user_id)
        return Principal(
            user_id,
            email,
            tuple(Binding(Role(r.role), r.tenant_id, r.project_id) for r in rows),
        )


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
