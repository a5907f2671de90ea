"""The Ray actor behind one replica: starts the engine process on the node Ray placed it on.

Ray places the actor by the deployment's resources and restarts it when it dies; the actor
only runs the same ``ProcessSpec`` command the local supervisor would (our worker, vLLM,
llama.cpp), on a free port of its node, and tells the gateway where it listens. The gateway
probes that address itself (``serving/health.py``), exactly as for a local replica.

The engine process is the actor's child with the same guards as local replicas
(``serving/process.py``): its own session, and a parent-death signal, so an actor killed by
Ray (or by ``kill -9``) takes its engine down with it and the restarted actor starts afresh.
Methods are ``async`` (an async actor): ``wait()`` parks until the engine exits while
``stop()`` can still be called beside it.

Kept free of Ray imports at module level so the gateway imports it without Ray installed;
``RaySupervisor`` wraps it with ``ray.remote`` when it starts.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from lingyun.serving import process, replica_auth
from lingyun.serving.ports import PortAllocator

# Grace for SIGTERM before SIGKILL when the gateway stops a replica.
STOP_GRACE_S = 10.0


class ReplicaActor:
    """One replica's engine process on a Ray node; see the module docstring."""

    def __init__(self, deployment: dict[str, Any], replica_id: str) -> None:
        self._deployment = deployment
        self._replica_id = replica_id
        self._proc: asyncio.subprocess.Process | None = None
        self._info: dict[str, Any] = {}

    async def start(self) -> dict[str, Any]:
        """Start the engine (idempotent while it runs: a retried call gets the same answer).

        Returns ``host``, ``port``, ``pid``, ``node_id``, ``health_path``,
        ``ready_timeout_s``, ``model_id``, ``log_path`` and ``secret`` (the engine listens on
        the node address, so it refuses callers without this fresh per-start secret; see
        ``serving/replica_auth.py``); or ``error`` when the engine refuses the deployment's
        configuration (retrying would not help)."""
        if self._proc is not None and self._proc.returncode is None:
            return self._info
        import ray

        from lingyun.config import DeploymentConfig
        from lingyun.engines.registry import ENGINES

        dep = DeploymentConfig.model_validate(self._deployment)
        engine = ENGINES.get(dep.engine)
        process_of = getattr(engine, "process", None)
        if process_of is None:
            return {"error": f"engine {dep.engine!r} does not run a process"}
        host: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        port = PortAllocator(host).acquire()
        try:
            spec = process_of(dep, host, port)
        except ValueError as exc:
            return {"error": str(exc)}
        log_dir = Path(tempfile.gettempdir()) / "lingyun-ray" / "logs"
        log_path = log_dir / (re.sub(r"[^A-Za-z0-9._-]", "_", self._replica_id) + ".log")
        secret = replica_auth.new_secret()
        log_file = process.open_log(log_path, f"{self._replica_id}: {spec.argv}")
        try:
            env = replica_auth.secret_env(spec, secret)
            self._proc = await process.spawn(spec.argv, env, log_file)
        except OSError as exc:
            return {"error": f"cannot run {spec.argv[0]}: {exc}"}
        finally:
            log_file.close()
        self._info = {
            "host": host,
            "port": port,
            "pid": self._proc.pid,
            "actor_pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "health_path": spec.health_path,
            "ready_timeout_s": spec.ready_timeout_s,
            "model_id": spec.model_id or dep.name,
            "log_path": str(log_path),
            "secret": secret,
        }
        return self._info

    async def wait(self) -> int | None:
        """Until the engine exits: its exit code; None at once when none runs (a restarted
        actor answers a retried ``wait()`` this way, and the gateway starts it again)."""
        proc = self._proc
        if proc is None:
            return None
        code = await proc.wait()
        process.kill_group(proc.pid)
        return code

    async def stop(self) -> None:
        proc = self._proc
        if proc is not None:
            await process.terminate(proc, STOP_GRACE_S)
