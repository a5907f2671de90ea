"""``RaySupervisor``: replicas as Ray actors, placed on a cluster by their resource needs.

Same contract as ``LocalSupervisor`` (``serving/supervisor.py``), same pool and autoscaler
(``serving/pool.py``); only the runner differs. Per replica a ``_RayRunner``:

1. creates a named actor (``ReplicaActor``, ``serving/ray_actor.py``) in namespace
   ``lingyun`` with the deployment's ``resources`` (``num_cpus``, ``num_gpus``, ``memory`` in
   bytes, any other key a custom resource such as a node label), ``max_restarts=-1`` and
   ``max_task_retries=-1`` so Ray restarts a dead actor and replays our calls on it. A replica
   asking for more than one GPU is placed through a one-bundle ``STRICT_PACK`` placement
   group: its GPUs are reserved together on one node (tensor parallelism inside one engine).
2. calls ``start()``: the actor starts the engine on its node and returns its address;
3. probes ``http://host:port/health`` from the gateway, as for a local replica, and routes
   only once it answers 200;
4. awaits ``wait()``: it returns when the engine exits, or at once on a restarted actor. The
   replica is then unroutable at once and started again after a backoff.

Actors are not detached: they belong to this gateway's Ray driver, so a gateway that dies
takes its replicas with it and nothing leaks; the gateway that takes the deployment over
(``serving/cluster.py``) starts its own. Ray calls are awaited on the event loop (Ray object
refs are awaitable); ``ray.init``/``ray.shutdown`` block, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lingyun.serving import replica_auth
from lingyun.serving.autoscale import ScalingTimings
from lingyun.serving.health import HealthPolicy, Probes, until_healthy, watch
from lingyun.serving.pool import PooledSupervisor, Runner, RunnerBase
from lingyun.serving.supervisor import ReplicaState, ReplicaStatus

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig
    from lingyun.engines.base import ProcessEngine, UpstreamEngine

    Engine = ProcessEngine | UpstreamEngine

logger = logging.getLogger(__name__)

NAMESPACE = "lingyun"
INSTALL_HINT = "Ray is not installed: pip install 'lingyun[ray]'"


def actor_options(resources: Mapping[str, Any]) -> dict[str, Any]:
    """Ray actor options from a deployment's ``resources`` (see the module docstring)."""
    known = {"num_cpus", "num_gpus", "memory"}
    options: dict[str, Any] = {
        "num_cpus": float(resources.get("num_cpus", 1)),
        "num_gpus": float(resources.get("num_gpus", 0)),
    }
    if resources.get("memory") is not None:
        options["memory"] = int(resources["memory"])
    custom = {k: float(v) for k, v in resources.items() if k not in known}
    if custom:
        options["resources"] = custom
    return options


def bundle_of(options: Mapping[str, Any]) -> dict[str, float]:
    """The placement-group bundle reserving everything one actor asks for."""
    bundle = {"CPU": float(options["num_cpus"]), "GPU": float(options["num_gpus"])}
    if "memory" in options:
        bundle["memory"] = float(options["memory"])
    bundle.update(options.get("resources", {}))
    return {k: v for k, v in bundle.items() if v > 0}


class _RayRunner(RunnerBase):
    """Keeps one actor-backed replica alive until ``stop()``."""

    def __init__(self, sup: RaySupervisor, dep: DeploymentConfig, n: int) -> None:
        super().__init__(dep, n)
        self._sup = sup
        self._dep = dep
        self.actor_name = f"{sup.instance}/{dep.name}/{n}"
        self.info: dict[str, Any] = {}
        self._actor: Any = None
        self._pg: Any = None
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.actor_name)

    def status(self) -> ReplicaStatus:
        return self._status(
            self.info.get("pid"), self.info.get("log_path"), self.info.get("node_id")
        )

    async def stop(self) -> None:
        self._stopping = True
        self._set_healthy(False)
        actor, pg = self._actor, self._pg
        if actor is not None:
            try:
                await asyncio.wait_for(actor.stop.remote(), self._sup.policy.stop_grace_s + 5)
            except Exception as exc:  # a dead or unreachable actor: kill it below anyway
                logger.debug("replica %s: stop() failed: %s", self.replica.replica_id, exc)
        self._task.cancel()
        await asyncio.wait([self._task])
        ray = self._sup.ray
        if actor is not None:
            ray.kill(actor, no_restart=True)
        if pg is not None:
            ray.util.remove_placement_group(pg)
        self.state = ReplicaState.STOPPED

    def _set_healthy(self, healthy: bool) -> None:
        healthy = healthy and not self.draining and not self._stopping
        if healthy and not self.replica.healthy:
            logger.info(
                "replica %s is healthy at %s", self.replica.replica_id, self.replica.base_url
            )
        self.replica.healthy = healthy
        self.state = ReplicaState.HEALTHY if healthy else ReplicaState.UNHEALTHY

    def _create_actor(self) -> Any:
        ray = self._sup.ray
        from lingyun.serving.ray_actor import ReplicaActor

        options = actor_options(self._dep.resources)
        if options["num_gpus"] > 1:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            self._pg = ray.util.placement_group([bundle_of(options)], strategy="STRICT_PACK")
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                self._pg, placement_group_bundle_index=0
            )
        cls = ray.remote(ReplicaActor)
        return cls.options(
            name=self.actor_name,
            namespace=NAMESPACE,
            max_restarts=-1,
            max_task_retries=-1,
            **options,
        ).remote(self._dep.model_dump(mode="json"), self.replica.replica_id)

    async def _run(self) -> None:
        policy = self._sup.policy
        backoff = policy.backoff_initial_s
        while not self._stopping:
            self.state = ReplicaState.STARTING
            try:
                if self._actor is None:
                    self._actor = self._create_actor()
                info: dict[str, Any] = await self._actor.start.remote()
            except Exception as exc:  # Ray's errors: actor gone for good, name still taken
                logger.warning("replica %s: actor failed: %s", self.replica.replica_id, exc)
                self.last_error = str(exc)
                self._actor = None
            else:
                if "error" in info:
                    logger.error("deployment %s cannot start: %s", self._dep.name, info["error"])
                    self.state, self.last_error = ReplicaState.FAILED, info["error"]
                    return
                self.info = info
                self.last_exit_code = await self._serve(info)
            if self._stopping:
                return
            self.state, self.backoff_s = ReplicaState.BACKOFF, backoff
            logger.warning(
                "replica %s (actor %s) ended with %s; restarting in %.2fs",
                self.replica.replica_id, self.actor_name, self.last_exit_code, backoff,
            )  # fmt: skip
            await asyncio.sleep(backoff)
            backoff = policy.next_backoff(backoff)
            self.restarts += 1

    async def _serve(self, info: dict[str, Any]) -> int | None:
        """One life of the engine: routable while probes pass, until ``wait()`` returns."""
        self.replica.base_url = f"http://{info['host']}:{info['port']}/v1"
        self.replica.model_id = info["model_id"]
        self.replica.headers = replica_auth.auth_headers(info["secret"])
        self.replica.generation += 1
        logger.info(
            "replica %s started on node %s: pid %s at %s",
            self.replica.replica_id, info["node_id"], info["pid"], self.replica.base_url,
        )  # fmt: skip
        url = f"http://{info['host']}:{info['port']}{info['health_path']}"
        watcher = asyncio.get_running_loop().create_task(
            self._watch_health(url, float(info["ready_timeout_s"]))
        )
        try:
            code: int | None = await self._actor.wait.remote()
        except Exception as exc:  # the actor died for good; the loop makes a new one
            logger.warning("replica %s: actor lost: %s", self.replica.replica_id, exc)
            self._actor = None
            code = None
        finally:
            self._set_healthy(False)
            watcher.cancel()
        await asyncio.wait([watcher])
        return code

    async def _watch_health(self, url: str, ready_timeout_s: float) -> None:
        policy, client = self._sup.policy, self._sup.probes.client
        if not await until_healthy(client, url, policy, ready_timeout_s, self.replica.headers):
            self.last_error = f"not healthy within {ready_timeout_s}s"
            logger.error("replica %s %s; restarting it", self.replica.replica_id, url)
            await self._actor.stop.remote()  # wait() then returns and the loop restarts
            return
        self._set_healthy(True)
        replica = self.replica  # idle: probed every policy.idle_s
        await watch(
            client, url, policy, replica.replica_id, self._set_healthy, replica.headers, replica
        )


class RaySupervisor(PooledSupervisor):
    """Runs deployments' replicas as Ray actors; see the module docstring.

    ``address`` is what ``ray.init`` takes: ``auto``, ``HOST:PORT`` (the head's GCS port) or
    ``ray://HOST:PORT`` (Ray Client). ``instance`` prefixes actor names, so two gateways on
    one cluster never clash over a name.
    """

    def __init__(
        self,
        address: str,
        *,
        engines: Mapping[str, Engine] | None = None,
        policy: HealthPolicy | None = None,
        scaling: ScalingTimings | None = None,
        instance: str | None = None,
    ) -> None:
        super().__init__(engines=engines, scaling=scaling)
        self.address = address
        self.policy = policy or HealthPolicy()
        self.instance = instance or f"lingyun-{secrets.token_hex(3)}"
        self.ray: Any = None
        self.probes = Probes("RaySupervisor")

    async def _open(self) -> None:
        try:
            import ray
        except ImportError as exc:
            raise ValueError(INSTALL_HINT) from exc
        self.ray = ray
        await asyncio.to_thread(
            ray.init,
            address=self.address,
            namespace=NAMESPACE,
            log_to_driver=False,
            ignore_reinit_error=True,
            logging_level=logging.WARNING,
        )
        logger.info("connected to the Ray cluster at %s", self.address)
        self.probes.open()

    async def _close(self) -> None:
        await self.probes.close()
        if self.ray is not None:
            await asyncio.to_thread(self.ray.shutdown)

    def _new_runner(self, dep: DeploymentConfig, engine: ProcessEngine, n: int) -> Runner:
        return _RayRunner(self, dep, n)
