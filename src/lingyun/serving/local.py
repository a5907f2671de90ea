"""``LocalSupervisor``: replicas as child processes of the gateway, on this machine.

Per process-engine deployment, runners (as many as the autoscaler of ``serving/pool.py``
asks for) each keep one child alive: pick a free 127.0.0.1 port, ask the engine for a
``ProcessSpec``, spawn it with output to
``<data_dir>/logs/<deployment>-<n>.log``, probe ``health_path`` until 200 (then the replica is
routable), and await the process: the moment it exits the replica is unroutable, and it is
restarted after an exponential backoff on the same ``Replica`` object with a new port.
Upstream-engine deployments get one always-healthy ``Replica`` and no process.

Invariants: a ``Replica`` is ``healthy`` only while its process runs and its last probes
passed; only this module writes ``healthy``/``base_url``/``model_id``; every child is ours
to end (see ``serving/process.py`` for how none outlives the gateway). Everything runs on
the event loop: no threads, no blocking waits.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from lingyun.serving import process, replica_auth
from lingyun.serving.autoscale import ScalingTimings
from lingyun.serving.health import HealthPolicy, Probes, until_healthy, watch
from lingyun.serving.pool import PooledSupervisor, Runner, RunnerBase
from lingyun.serving.ports import PortAllocator
from lingyun.serving.supervisor import ReplicaState, ReplicaStatus

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.engines.base import ProcessEngine, ProcessSpec, UpstreamEngine

    Engine = ProcessEngine | UpstreamEngine

logger = logging.getLogger(__name__)


def _file_name(name: str) -> str:
    """Deployment names may hold ``/`` and ``:`` (``Qwen/Qwen2.5-7B``); file names may not."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


class _Runner(RunnerBase):
    """Keeps one replica process alive until ``stop()``."""

    def __init__(self, sup: LocalSupervisor, dep: DeploymentConfig, engine: ProcessEngine, n: int):
        super().__init__(dep, n)
        self._sup = sup
        self._dep = dep
        self._engine = engine
        self.log_path = sup.data_dir / "logs" / f"{_file_name(dep.name)}-{n}.log"
        self._proc: asyncio.subprocess.Process | None = None
        self._healthy_since: float | None = None
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=self.replica.replica_id
        )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def status(self) -> ReplicaStatus:
        return self._status(self.pid, str(self.log_path))

    async def stop(self) -> None:
        self._stopping = True
        proc = self._proc
        if proc is not None:
            # The runner's own proc.wait() then returns and it ends by itself.
            await process.terminate(proc, self._sup.policy.stop_grace_s)
        # Interrupts a backoff sleep or a spawn (asyncio kills a child whose spawn is cancelled).
        self._task.cancel()
        await asyncio.wait([self._task])
        self._set_healthy(False)
        self.state = ReplicaState.STOPPED

    def _set_healthy(self, healthy: bool) -> None:
        healthy = healthy and not self.draining
        if healthy and not self.replica.healthy:
            logger.info(
                "replica %s is healthy at %s", self.replica.replica_id, self.replica.base_url
            )
            self._healthy_since = asyncio.get_running_loop().time()
        self.replica.healthy = healthy
        self.state = ReplicaState.HEALTHY if healthy else ReplicaState.UNHEALTHY

    async def _run(self) -> None:
        policy = self._sup.policy
        backoff = policy.backoff_initial_s
        while not self._stopping:
            self.state = ReplicaState.STARTING
            port = self._sup.ports.acquire()
            try:
                returncode = await self._run_once(port)
            finally:
                self._sup.ports.release(port)
            if returncode is None and self.state is ReplicaState.FAILED:
                return
            if self._stopping:
                return
            loop = asyncio.get_running_loop()
            if (
                self._healthy_since is not None
                and loop.time() - self._healthy_since >= policy.backoff_reset_after_s
            ):
                backoff = policy.backoff_initial_s
            self._healthy_since = None
            self.state = ReplicaState.BACKOFF
            self.backoff_s = backoff
            logger.warning(
                "replica %s exited with %s; restarting in %.2fs (log: %s)",
                self.replica.replica_id, returncode, backoff, self.log_path,
            )  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = policy.next_backoff(backoff)
            self.restarts += 1

    async def _run_once(self, port: int) -> int | None:
        """One life of the child; its exit code, or None if it could not be started."""
        host = self._sup.host
        try:
            spec = self._engine.process(self._dep, host, port)
        except ValueError as exc:
            # Bad configuration does not heal by retrying; re-applying the deployment does.
            logger.error("deployment %s cannot start: %s", self._dep.name, exc)
            self.state = ReplicaState.FAILED
            self.last_error = str(exc)
            return None
        secret = replica_auth.new_secret()
        self.replica.base_url = f"http://{host}:{port}/v1"
        self.replica.model_id = spec.model_id or self._dep.name
        self.replica.headers = replica_auth.auth_headers(secret)
        self.replica.generation += 1
        log_file = process.open_log(self.log_path, f"{self.replica.replica_id}: {spec.argv}")
        try:
            proc = await process.spawn(spec.argv, replica_auth.secret_env(spec, secret), log_file)
        except OSError as exc:
            logger.error(
                "replica %s: cannot run %s: %s", self.replica.replica_id, spec.argv[0], exc
            )
            self.last_error = f"cannot run {spec.argv[0]}: {exc}"
            return None
        finally:
            log_file.close()
        self._proc = proc
        logger.info("replica %s started: pid %s, port %s", self.replica.replica_id, proc.pid, port)
        watcher = asyncio.get_running_loop().create_task(self._watch_health(proc, spec, port))
        try:
            returncode = await proc.wait()
        finally:
            # Unroutable at once: the gateway must not send to a dead process.
            self._set_healthy(False)
            self._proc = None
            watcher.cancel()
            process.kill_group(proc.pid)
        await asyncio.wait([watcher])
        self.last_exit_code = returncode
        return returncode

    async def _watch_health(
        self, proc: asyncio.subprocess.Process, spec: ProcessSpec, port: int
    ) -> None:
        policy = self._sup.policy
        client = self._sup.probes.client
        url = f"http://{self._sup.host}:{port}{spec.health_path}"
        ready = until_healthy(client, url, policy, spec.ready_timeout_s, self.replica.headers)
        if not await ready:
            self.last_error = f"not healthy within {spec.ready_timeout_s}s"
            logger.error(
                "replica %s %s; restarting it (log: %s)",
                self.replica.replica_id, self.last_error, self.log_path,
            )  # fmt: skip
            await process.terminate(proc, policy.stop_grace_s)
            return
        self._set_healthy(True)
        replica = self.replica  # idle: probed every policy.idle_s
        await watch(
            client, url, policy, replica.replica_id, self._set_healthy, replica.headers, replica
        )


class LocalSupervisor(PooledSupervisor):
    """Runs deployments' replicas as child processes; see the module docstring.

    ``engines`` defaults to ``lingyun.engines.registry.ENGINES`` (tests inject fakes);
    ``policy`` holds probe and restart timings, ``scaling`` the autoscaler's.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        engines: Mapping[str, Engine] | None = None,
        policy: HealthPolicy | None = None,
        scaling: ScalingTimings | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(engines=engines, scaling=scaling)
        self.data_dir = Path(data_dir)
        self.policy = policy or HealthPolicy()
        self.host = host
        self.ports = PortAllocator(host)
        self.probes = Probes("LocalSupervisor")

    async def _open(self) -> None:
        self.probes.open()

    async def _close(self) -> None:
        await self.probes.close()

    def _new_runner(self, dep: DeploymentConfig, engine: ProcessEngine, n: int) -> Runner:
        return _Runner(self, dep, engine, n)
