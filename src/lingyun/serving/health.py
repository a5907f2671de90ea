"""Health probing of replica processes: ``GET {health_path}`` answering 200 means routable.

Probes are how a replica *becomes* healthy (the process is up but the model may still be
loading) and how a hung one is taken out of routing. A replica whose process exits is marked
unhealthy by the supervisor's ``proc.wait()``, not here: a probe would notice seconds late.

An idle replica is probed less: while none of its requests is in flight, none started since
the last probe, and that probe succeeded, the next one waits ``idle_interval_s`` (a hung
replica nobody uses harms no one, and the first request to it moves probing back to
``interval_s``; a crash is still seen at once by ``proc.wait()``). Five idle deployments so
cost a probe every few seconds instead of one a second.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthPolicy:
    """Timings of probing and restarting; tests shrink them, production keeps the defaults."""

    # While waiting for the first 200: probe often, so a ready replica is routable at once.
    startup_interval_s: float = 0.25
    # Once healthy: a probe every few seconds is enough to catch a hung replica.
    interval_s: float = 5.0
    # ... and while it is idle and its last probe succeeded; None: 6 x interval_s.
    idle_interval_s: float | None = None
    probe_timeout_s: float = 5.0
    # Consecutive failed probes before a running replica leaves routing (one slow answer
    # under heavy load should not empty the pool).
    failure_threshold: int = 2
    # Restart delay after a crash: doubles from initial to max; back to initial once the
    # replica had stayed healthy for reset_after_s.
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    backoff_reset_after_s: float = 60.0
    # stop(): SIGTERM, then SIGKILL after this long.
    stop_grace_s: float = 10.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not 0 < self.backoff_initial_s <= self.backoff_max_s:
            raise ValueError("need 0 < backoff_initial_s <= backoff_max_s")

    def next_backoff(self, current: float) -> float:
        return min(current * 2, self.backoff_max_s)

    @property
    def idle_s(self) -> float:
        return self.idle_interval_s if self.idle_interval_s is not None else 6 * self.interval_s


async def probe(
    client: aiohttp.ClientSession,
    url: str,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """True when ``url`` answers 200; any connection error or other status is False.
    ``headers`` carry the replica's secret: replicas refuse requests without it. Redirects
    are not followed (a replica has no reason to send one)."""
    try:
        async with client.get(
            url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        logger.debug("health probe %s failed: %s", url, exc)
        return False
    if status != 200:
        logger.debug("health probe %s answered %s", url, status)
        return False
    return True


def probe_client() -> aiohttp.ClientSession:
    """A session for probing replicas, on the relay's HTTP stack; ignores proxy variables
    (``trust_env`` off), which would otherwise send 127.0.0.1 probes through a proxy."""
    return aiohttp.ClientSession(trust_env=False)


class Probes:
    """A supervisor's probe client: opened when it starts, closed when it stops."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._client: aiohttp.ClientSession | None = None

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._client is None:
            raise RuntimeError(f"{self.owner} is not started")
        return self._client

    def open(self) -> None:
        self._client = probe_client()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


async def until_healthy(
    client: aiohttp.ClientSession,
    url: str,
    policy: HealthPolicy,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> bool:
    """Probe a starting replica every ``startup_interval_s`` until it answers 200; False if it
    has not within ``timeout_s`` (the caller stops it and its supervisor restarts it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await probe(client, url, policy.probe_timeout_s, headers):
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(policy.startup_interval_s)
    return True


class Activity(Protocol):
    """What ``watch`` asks of a replica: is it in use? (``Replica`` has both fields.)"""

    inflight: int
    last_used: float  # time.monotonic() of the last change of ``inflight``


async def watch(
    client: aiohttp.ClientSession,
    url: str,
    policy: HealthPolicy,
    replica_id: str,
    set_healthy: Callable[[bool], None],
    headers: Mapping[str, str] | None = None,
    activity: Activity | None = None,
) -> None:
    """Probe a running replica forever: out of routing after ``failure_threshold`` failed
    probes in a row, back in at the next good one. (Process exit is watched elsewhere.)
    With ``activity``, an idle replica whose last probe passed is probed every
    ``idle_s`` instead (checked every ``interval_s``, in memory)."""
    failures = 0
    healthy = True
    probed_at = time.monotonic()
    while True:
        await asyncio.sleep(policy.interval_s)
        if activity is not None and failures == 0:
            busy = activity.inflight > 0 or activity.last_used >= probed_at
            if not busy and time.monotonic() - probed_at < policy.idle_s:
                continue
        probed_at = time.monotonic()
        if await probe(client, url, policy.probe_timeout_s, headers):
            failures = 0
            healthy = True
            set_healthy(True)
            continue
        failures += 1
        if failures >= policy.failure_threshold and healthy:
            logger.warning(
                "replica %s failed %s health probes; not routing to it", replica_id, failures
            )
            healthy = False
            set_healthy(False)
