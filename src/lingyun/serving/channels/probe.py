"""One test request to a channel: the half-open probe, and ``lingyun channels test``.

The smallest real request (one user word, ``max_tokens: 1``) rather than ``GET /models``: a
key whose quota is spent still lists models, and only a completion shows what traffic sees.
It is judged by the same rule as live traffic (``breaker.is_failure``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import aiohttp

from lingyun.serving.channels.breaker import is_failure
from lingyun.serving.replica import Replica

PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    status: int | None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "latency_ms": round(self.latency_ms, 1),
            "status": self.status,
            "error": self.error,
        }


async def probe(session: aiohttp.ClientSession, replica: Replica) -> ProbeResult:
    body = {
        "model": replica.model_id,
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 1,
    }
    headers = {**replica.headers, "content-type": "application/json"}
    began = time.monotonic()
    try:
        async with session.post(
            replica.base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        ms = (time.monotonic() - began) * 1000
        return ProbeResult(False, ms, None, f"no answer: {type(exc).__name__}: {exc}"[:300])
    ms = (time.monotonic() - began) * 1000
    if status >= 400:
        err = replica.dialect.translate_error(status, raw)
        if is_failure(err):
            return ProbeResult(False, ms, status, f"{status} {err.code}: {err.message}"[:300])
    return ProbeResult(True, ms, status)
