"""``lingyun serve --workers N``: one port, N gateway processes, one owner of the replicas.

The supervisor is a small synchronous process. It migrates the database once (so N workers
do not race Alembic), binds the port once and starts N workers (``cli/serve_worker.py``),
each a full gateway app serving on the inherited socket: the kernel hands each connection
to whichever worker accepts it first, so a busy worker takes fewer. What the workers share:

- the database: each worker is its own instance owner (``<name>/w<slot>``, stable per slot)
  for the journal, its delivery log and reconciliation; a worker restarted into its slot
  replays its own log at start, so a stream it was serving when it died is charged once;
- the replicas: the workers form a group (``serving/cluster.py``) through a cluster secret
  generated here and passed in the environment (never argv). Whichever worker wins a
  deployment's lease runs its replicas; the others route to the published ones. A follower
  that dies and restarts touches no replica; an owner that dies takes its replicas with it
  (``PR_SET_PDEATHSIG``) and the restarted worker, the same owner, reclaims the lease;
- rate limits: Redis when configured, else one file all workers decide in
  (``admission/shared_limiter.py``). The fair queue (VTC) stays per worker;
- metrics: ``PROMETHEUS_MULTIPROC_DIR`` is set before any worker imports prometheus-client,
  so every worker's /metrics sums the counters and histograms of all of them.

A worker that dies is restarted (at once, or with a backoff doubling from 0.5 s to 30 s if it
keeps dying within ``QUICK_EXIT_S`` of its start); one that fails its first start (uvicorn's
exit code 3: the app's start-up raised) stops everything, since a retry would fail alike.
SIGTERM or SIGINT stops all workers (SIGTERM each, SIGKILL after ``STOP_GRACE_S``). Workers
lead their own sessions, so a terminal's Ctrl-C reaches only the supervisor, which passes it
on once, and die with the supervisor if it is killed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from lingyun.config import Settings
from lingyun.serving import replica_auth, worker_env
from lingyun.serving.process import _die_with_parent

logger = logging.getLogger(__name__)

# Connections the kernel queues before a worker accepts them (capped by net.core.somaxconn).
BACKLOG = 16384
QUICK_EXIT_S = 10.0
BACKOFF_S, MAX_BACKOFF_S = 0.5, 30.0
STOP_GRACE_S = 30.0
STARTUP_FAILED = 3  # uvicorn's exit status when the app's lifespan start-up raised
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def worker_count(value: str) -> int:
    """``auto`` is one worker per CPU this process may run on; else a positive integer."""
    if value == "auto":
        return max(1, len(os.sched_getaffinity(0)))
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"--workers must be a positive integer or auto, not {value!r}")
    return count


def listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    backoff_s: float = 0.0
    due: float | None = None  # when a restart is due, while the slot waits for one


class WorkerPool:
    """The supervisor of ``count`` gateway workers; ``run`` returns the exit status."""

    def __init__(self, settings: Settings, count: int, log_level: str) -> None:
        self.settings = settings
        self.count = count
        self.log_level = log_level
        self.slots = [_Slot(i) for i in range(count)]
        self._stopping_since: float | None = None
        self._status = 0
        self._env: dict[str, str] = {}
        self._sock: socket.socket | None = None
        self._fd = -1  # the listening socket's, once bound

    def run(self) -> int:
        self._prepare()
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for slot in self.slots:
                self._spawn(slot)
            while any(s.proc is not None for s in self.slots) or self._restarts_due():
                info = signal.sigtimedwait(_SIGNALS, self._wait_s())
                if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                    self._stop(f"signal {signal.Signals(info.si_signo).name}", 0)
                self._reap()
                self._restart_due()
                self._kill_if_overdue()
        finally:
            for slot in self.slots:  # only on an error of our own: none outlives us
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)
            if self._sock is not None:
                self._sock.close()
        return self._status

    # -- start ------------------------------------------------------------------------------

    def _prepare(self) -> None:
        data = Path(self.settings.data_dir)
        data.mkdir(parents=True, exist_ok=True)
        asyncio.run(_migrate(self.settings))
        self._sock = listen(self.settings.host, self.settings.port)
        self._fd = self._sock.fileno()
        port = int(self._sock.getsockname()[1])
        # Metrics of an earlier run must not be summed into ours; nor its rate windows.
        metrics_dir = data / "prometheus-multiproc"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        limits = data / "rate-limits.db"
        for stale in (limits, Path(f"{limits}-wal"), Path(f"{limits}-shm")):
            stale.unlink(missing_ok=True)
        settings = self.settings.model_copy(update={"port": port})
        self.settings = settings
        self._env = {
            "PYTHONUNBUFFERED": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            worker_env.COUNT_ENV: str(self.count),
            worker_env.FD_ENV: str(self._fd),
            worker_env.SETTINGS_ENV: settings.model_dump_json(),
            worker_env.SETUP_ENV: secrets.token_urlsafe(24),
            replica_auth.CLUSTER_SECRET_ENV: replica_auth.cluster_secret()
            or secrets.token_urlsafe(32),
        }
        if not settings.redis_url:
            self._env[worker_env.LIMITS_ENV] = str(limits)
        logger.info("serving on http://%s:%d with %d workers", settings.host, port, self.count)

    def _spawn(self, slot: _Slot) -> None:
        env = {**os.environ, **self._env, worker_env.SLOT_ENV: str(slot.index)}
        argv = [sys.executable, "-m", "lingyun.cli.serve_worker", "--log-level", self.log_level]
        death = _die_with_parent(os.getpid())

        def setup() -> None:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)  # ours are blocked for sigwait
            if death is not None:
                death()

        slot.proc = subprocess.Popen(
            argv,
            env=env,
            pass_fds=(self._fd,),
            start_new_session=True,
            preexec_fn=setup,  # the supervisor has no other thread to deadlock
        )
        slot.started_at, slot.due = time.monotonic(), None
        slot.starts += 1
        logger.info("worker %d started (pid %d)", slot.index, slot.proc.pid)

    # -- watch ------------------------------------------------------------------------------

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.proc is None or slot.proc.poll() is None:
                continue
            pid, code = slot.proc.pid, slot.proc.returncode
            slot.proc = None
            _forget_metrics(pid, self._env["PROMETHEUS_MULTIPROC_DIR"])
            if self._stopping_since is not None:
                continue
            if code == STARTUP_FAILED and slot.starts == 1:
                logger.error("worker %d could not start (status %d); stopping", slot.index, code)
                self._stop("a worker failed to start", STARTUP_FAILED)
                continue
            quick = time.monotonic() - slot.started_at < QUICK_EXIT_S
            slot.backoff_s = min(max(slot.backoff_s * 2, BACKOFF_S), MAX_BACKOFF_S) if quick else 0
            slot.due = time.monotonic() + slot.backoff_s
            logger.warning("worker %d (pid %d) exited with status %s; restarting in %.1fs",
                           slot.index, pid, code, slot.backoff_s)  # fmt: skip

    def _restarts_due(self) -> bool:
        return self._stopping_since is None and any(s.due is not None for s in self.slots)

    def _restart_due(self) -> None:
        if self._stopping_since is not None:
            return
        now = time.monotonic()
        for slot in self.slots:
            if slot.due is not None and slot.due <= now:
                self._spawn(slot)

    def _wait_s(self) -> float:
        now = time.monotonic()
        if self._stopping_since is not None:
            return max(0.05, self._stopping_since + STOP_GRACE_S - now)
        dues = [s.due - now for s in self.slots if s.due is not None]
        return max(0.0, min(dues)) if dues else 60.0

    # -- stop -------------------------------------------------------------------------------

    def _stop(self, why: str, status: int) -> None:
        if self._stopping_since is not None:
            return
        logger.info("stopping %d workers: %s", self.count, why)
        self._stopping_since, self._status = time.monotonic(), status
        for slot in self.slots:
            slot.due = None
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)

    def _kill_if_overdue(self) -> None:
        since = self._stopping_since
        if since is None or time.monotonic() - since < STOP_GRACE_S:
            return
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                logger.warning("worker %d ignored SIGTERM; killing it", slot.index)
                slot.proc.kill()


async def _migrate(settings: Settings) -> None:
    from lingyun.store.db import Database

    db = Database(settings.resolved_database_url())
    try:
        await db.migrate()
    finally:
        await db.close()


def _forget_metrics(pid: int, path: str) -> None:
    """A dead worker's live gauges leave the sums; its counters stay (they happened)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
