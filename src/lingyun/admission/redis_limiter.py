"""Limits shared by several gateway processes: the same windows as ``buckets.py``, in Redis.

One admission is one round trip: a Lua script checks every rule of the request against
Redis's own clock (``TIME``, so gateways' clocks need not agree) and commits all of them or
none. Keys per rule (all carry the tenant id as a hash tag, so a request's keys share one
cluster slot): ``…:req`` sorted set of request ids by admission time (ms), ``…:tok`` sorted
set and ``…:amt`` hash (id -> tokens, ``_sum`` the total) for tokens, ``…:conc`` sorted set of
ids by lease deadline (a crashed gateway's slots expire), ``…:bkt`` hash for the per-second
bucket. Every key expires after a window of inactivity.

If Redis cannot be reached (refused, or no answer within ``TIMEOUT_S``) the limiter fails
closed by default: a 503 ``rate_limiter_unavailable`` with Retry-After, since limits are what
an operator promised to hold (``rate_limits_without_redis: open`` admits without limits
instead, for those who rank availability first). Either way it logs once a minute and
recovers by itself: the client reconnects on the next request, and scripts are reloaded.
Releases that fail are dropped; the keys they would have touched expire by themselves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from lingyun.admission.limits import (
    WINDOW_S,
    Charge,
    Dimension,
    LimitRule,
    Outcome,
    Refusal,
    RuleState,
)
from lingyun.errors import ServiceUnavailableError

logger = logging.getLogger(__name__)

# How long one admission may wait on Redis (connect or answer) before it counts as down.
TIMEOUT_S = 2.0

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, cost = ARGV[1], tonumber(ARGV[2])
local window, lease = tonumber(ARGV[3]), tonumber(ARGV[4])
local n = #KEYS / 5
local best_rule, best_dim, best_wait = 0, '', -1
local used_req, used_tok, bucket = {}, {}, {}

local function block(i, dim, wait)
  if wait > best_wait then best_rule, best_dim, best_wait = i, dim, wait end
end

for i = 1, n do
  local k, a = (i - 1) * 5, 4 + (i - 1) * 4
  local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local conc, cap = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if rpm >= 0 then
    local kreq = KEYS[k + 1]
    redis.call('ZREMRANGEBYSCORE', kreq, '-inf', now - window)
    local used = redis.call('ZCARD', kreq)
    used_req[i] = used
    if used + 1 > rpm then
      local wait = window
      if rpm > 0 then
        local e = redis.call('ZRANGE', kreq, used - rpm, used - rpm, 'WITHSCORES')
        if #e > 0 then wait = tonumber(e[2]) + window - now end
      end
      block(i, 'requests', wait)
    end
    if cap > 0 then
      local b = redis.call('HMGET', KEYS[k + 5], 'tokens', 'stamp')
      local tokens, stamp = tonumber(b[1]) or cap, tonumber(b[2]) or now
      local rate = rpm / window
      if now > stamp then tokens = math.min(cap, tokens + (now - stamp) * rate) end
      bucket[i] = tokens
      if tokens < 1 then
        if rate > 0 then block(i, 'requests_per_second', (1 - tokens) / rate)
        else block(i, 'requests_per_second', window) end
      end
    end
  end
  if tpm >= 0 then
    local ktok, kamt = KEYS[k + 2], KEYS[k + 3]
    local old = redis.call('ZRANGEBYSCORE', ktok, '-inf', now - window)
    for _, m in ipairs(old) do
      redis.call('HINCRBY', kamt, '_sum', -tonumber(redis.call('HGET', kamt, m) or '0'))
      redis.call('HDEL', kamt, m)
    end
    if #old > 0 then redis.call('ZREMRANGEBYSCORE', ktok, '-inf', now - window) end
    local used = tonumber(redis.call('HGET', kamt, '_sum') or '0')
    used_tok[i] = used
    local excess = used + cost - tpm
    if excess > 0 then
      local wait = window
      if cost <= tpm then
        local entries = redis.call('ZRANGE', ktok, 0, -1, 'WITHSCORES')
        for j = 1, #entries, 2 do
          excess = excess - tonumber(redis.call('HGET', kamt, entries[j]) or '0')
          if excess <= 0 then wait = tonumber(entries[j + 1]) + window - now break end
        end
      end
      block(i, 'tokens', wait)
    end
  end
  if conc >= 0 then
    local kconc = KEYS[k + 4]
    redis.call('ZREMRANGEBYSCORE', kconc, '-inf', now)
    if redis.call('ZCARD', kconc) >= conc then block(i, 'concurrency', 1000) end
  end
end

local admitted = best_rule == 0
local out = {best_rule, best_dim, math.ceil(math.max(best_wait, 0))}
for i = 1, n do
  local k, a = (i - 1) * 5, 4 + (i - 1) * 4
  local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local conc, cap = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local ttl = window + 1000
  if admitted then
    if rpm >= 0 then
      redis.call('ZADD', KEYS[k + 1], now, id)
      redis.call('PEXPIRE', KEYS[k + 1], ttl)
      used_req[i] = used_req[i] + 1
      if cap > 0 then
        redis.call('HSET', KEYS[k + 5], 'tokens', tostring(bucket[i] - 1), 'stamp', now)
        redis.call('PEXPIRE', KEYS[k + 5], ttl)
      end
    end
    if tpm >= 0 then
      redis.call('ZADD', KEYS[k + 2], now, id)
      redis.call('HSET', KEYS[k + 3], id, cost)
      redis.call('HINCRBY', KEYS[k + 3], '_sum', cost)
      redis.call('PEXPIRE', KEYS[k + 2], ttl)
      redis.call('PEXPIRE', KEYS[k + 3], ttl)
      used_tok[i] = used_tok[i] + cost
    end
    if conc >= 0 then
      redis.call('ZADD', KEYS[k + 4], now + lease, id)
      redis.call('PEXPIRE', KEYS[k + 4], lease + 1000)
    end
  end
  local req_left, req_reset, tok_left, tok_reset = -1, 0, -1, 0
  if rpm >= 0 then
    req_left = math.max(0, rpm - used_req[i])
    local last = redis.call('ZRANGE', KEYS[k + 1], -1, -1, 'WITHSCORES')
    if #last > 0 then req_reset = tonumber(last[2]) + window - now end
  end
  if tpm >= 0 then
    tok_left = math.max(0, tpm - used_tok[i])
    local last = redis.call('ZRANGE', KEYS[k + 2], -1, -1, 'WITHSCORES')
    if #last > 0 then tok_reset = tonumber(last[2]) + window - now end
  end
  table.insert(out, req_left)
  table.insert(out, math.ceil(req_reset))
  table.insert(out, tok_left)
  table.insert(out, math.ceil(tok_reset))
end
return out
"""

_RELEASE = """
for i = 1, #KEYS, 2 do
  local old = redis.call('HGET', KEYS[i], ARGV[1])
  if old then
    redis.call('HSET', KEYS[i], ARGV[1], ARGV[2])
    redis.call('HINCRBY', KEYS[i], '_sum', tonumber(ARGV[2]) - tonumber(old))
  end
  redis.call('ZREM', KEYS[i + 1], ARGV[1])
end
return 1
"""

_NONE = -1


class RedisLimiter:
    """Limits shared through Redis; see the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        lease_s: float = 3600.0,
        prefix: str = "lingyun:rl",
        fail_open: bool = False,
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - redis is a core dependency
            raise ValueError("redis_url needs the redis package: pip install 'redis>=5'") from exc
        # One immediate retry (a pooled connection that a Redis restart closed), no backoff:
        # an admission waits at most about 2 x TIMEOUT_S on a Redis that is away.
        self.client: Any = aioredis.Redis.from_url(
            url,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
        )
        self.fail_open = fail_open
        self.prefix = prefix
        self.lease_ms = int(lease_s * 1000)
        self._acquire = self.client.register_script(_ACQUIRE)
        self._release = self.client.register_script(_RELEASE)
        self._failing_since: float | None = None

    def _keys(self, tenant_id: str, rule: LimitRule) -> list[str]:
        base = f"{self.prefix}:{{{tenant_id}}}:{rule.id}"
        return [f"{base}:req", f"{base}:tok", f"{base}:amt", f"{base}:conc", f"{base}:bkt"]

    async def acquire(self, charge: Charge) -> Outcome:
        keys: list[str] = []
        args: list[Any] = [charge.request_id, charge.tokens, int(WINDOW_S * 1000), self.lease_ms]
        for rule in charge.rules:
            keys.extend(self._keys(charge.tenant_id, rule))
            args.extend((_opt(rule.rpm), _opt(rule.tpm), _opt(rule.concurrency)))
            args.append(_opt(rule.burst_capacity()))
        try:
            raw = cast(list[Any], await self._acquire(keys=keys, args=args))
        except Exception as exc:  # any Redis failure: closed or open (module docstring)
            self._failed(exc)
            if not self.fail_open:
                raise ServiceUnavailableError(
                    "Rate limits cannot be checked right now; the request was not started. "
                    "Retry shortly.",
                    code="rate_limiter_unavailable",
                    headers={"Retry-After": "1"},
                ) from exc
            return Outcome(None, tuple(RuleState() for _ in charge.rules))
        self._failing_since = None
        return _outcome(charge.rules, raw)

    async def release(self, charge: Charge, used_tokens: int) -> None:
        keys: list[str] = []
        for rule in charge.rules:
            amt, conc = self._keys(charge.tenant_id, rule)[2:4]
            keys.extend((amt, conc))
        try:
            await self._release(keys=keys, args=[charge.request_id, used_tokens])
        except Exception as exc:
            self._failed(exc)

    def forget(self, keep: Iterable[str]) -> None:
        return None  # keys expire by themselves

    async def close(self) -> None:
        await self.client.aclose()

    def _failed(self, exc: Exception) -> None:
        now = time.monotonic()
        if self._failing_since is None or now - self._failing_since > 60:
            what = "admitting without limits" if self.fail_open else "refusing with 503"
            logger.warning("rate limiter: Redis unavailable, %s: %s", what, exc)
            self._failing_since = now


def _opt(value: int | None) -> int:
    return _NONE if value is None else value


def _outcome(rules: Sequence[LimitRule], raw: list[Any]) -> Outcome:
    refused_at, dim, wait_ms = int(raw[0]), _text(raw[1]), int(raw[2])
    refusal = None
    if refused_at > 0:
        refusal = Refusal(rules[refused_at - 1], cast(Dimension, dim), wait_ms / 1000)
    states = []
    for i in range(len(rules)):
        req_left, req_reset, tok_left, tok_reset = (int(v) for v in raw[3 + 4 * i : 7 + 4 * i])
        states.append(
            RuleState(
                requests_remaining=None if req_left == _NONE else req_left,
                requests_reset_s=req_reset / 1000,
                tokens_remaining=None if tok_left == _NONE else tok_left,
                tokens_reset_s=tok_reset / 1000,
            )
        )
    return Outcome(refusal, tuple(states))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
