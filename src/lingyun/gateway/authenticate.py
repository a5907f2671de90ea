"""Stage 1: API key -> key, project, tenant.

Lookups are cached in memory for ``ttl_s`` (hits and misses alike), so the hot path makes no
database round trip; a revoked key stops working within ``ttl_s`` on every gateway, and a
flood of made-up keys costs one query per distinct key per ``ttl_s``. Concurrent misses on
one key share a single query.

Known keys and unknown ones live in two separate LRUs: a flood of random keys fills only the
negative cache (``max_misses``) and can never evict a real key, which stays cached while it
is used (each hit moves it to the young end) and costs no lookup within its ``ttl_s``.

While the database is unreachable (the lookup raises ``ServiceUnavailableError``) a known key
keeps working from its expired entry for up to ``max_stale_s`` since the database last
confirmed it, retried once per ``ttl_s``: nobody can revoke a key during the outage, and the
served requests are billed once it ends. An uncached key gets the 503.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from lingyun.errors import AuthenticationError, ServiceUnavailableError
from lingyun.tenancy.keys import hash_secret
from lingyun.tenancy.service import KeyInfo

Lookup = Callable[[str], Awaitable[KeyInfo | None]]
# Told about every accepted key (e.g. to batch ``last_used_at``); must not block.
OnUse = Callable[[KeyInfo], None]


class Authenticator:
    def __init__(
        self,
        lookup: Lookup,
        ttl_s: float = 1.0,
        max_entries: int = 100_000,
        on_use: OnUse | None = None,
        max_misses: int = 100_000,
        max_stale_s: float = 300.0,
    ) -> None:
        self._lookup = lookup
        self._on_use = on_use
        self._ttl = ttl_s
        self._max = max_entries
        self._max_misses = max_misses
        self._max_stale = max_stale_s
        # digest -> (expires at, confirmed at, key); least recently used first.
        self._cache: OrderedDict[str, tuple[float, float, KeyInfo]] = OrderedDict()
        # digest -> expires at, for keys the database does not know.
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._pending: dict[str, asyncio.Task[KeyInfo | None]] = {}

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        secret = _bearer(authorization)
        digest = hash_secret(secret)
        cached = self._cached(digest)
        info = await self._load(digest) if isinstance(cached, _Uncached) else cached
        if info is None:
            raise AuthenticationError(
                f"Incorrect API key provided: {_redact(secret)}. "
                "Create a key with `lingyun keys create`."
            )
        if info.expires_at is not None and info.expires_at.timestamp() <= time.time():
            raise AuthenticationError("This API key has expired.", code="expired_api_key")
        if self._on_use is not None:
            self._on_use(info)
        return info

    def invalidate(self) -> None:
        """Forget everything, e.g. after this process revoked a key."""
        self._cache.clear()
        self._misses.clear()

    def _cached(self, digest: str) -> KeyInfo | _Uncached | None:
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(digest)
            return hit[2]
        miss = self._misses.get(digest)
        if miss is not None and miss > now:
            return None
        return _UNCACHED

    async def _load(self, digest: str) -> KeyInfo | None:
        # The query runs as its own task so a cancelled client cannot cancel it for the
        # other requests waiting on the same key.
        task = self._pending.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._fetch(digest))
            self._pending[digest] = task
        try:
            return await asyncio.shield(task)
        except ServiceUnavailableError as outage:
            return self._stale(digest, outage)

    def _stale(self, digest: str, outage: ServiceUnavailableError) -> KeyInfo:
        """The database is away: the key as last confirmed, if recently enough; else the 503."""
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is None or now - hit[1] > self._max_stale:
            raise outage
        self._cache[digest] = (now + self._ttl, hit[1], hit[2])  # next try after one ttl
        return hit[2]

    async def _fetch(self, digest: str) -> KeyInfo | None:
        try:
            info = await self._lookup(digest)
        finally:
            self._pending.pop(digest, None)
        expires = time.monotonic() + self._ttl
        if info is None:
            self._cache.pop(digest, None)
            _put(self._misses, digest, expires, self._max_misses)
        else:
            self._misses.pop(digest, None)
            _put(self._cache, digest, (expires, time.monotonic(), info), self._max)
        return info


class _Uncached:
    """Not in either cache (or expired): ask the database."""


_UNCACHED = _Uncached()


def _put(lru: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    lru[key] = value
    lru.move_to_end(key)
    while len(lru) > limit:
        lru.popitem(last=False)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationError(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
        )
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("The Authorization header must be 'Bearer YOUR_KEY'.")
    return token


def _redact(secret: str) -> str:
    if len(secret) <= 10:
        return "****"
    return f"{secret[:6]}****{secret[-4:]}"
