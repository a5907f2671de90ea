"""Which supervisor a server runs: local child processes, or actors on a Ray cluster.

Picked from settings (``ray_address``). In a group of gateways (those given one
``LINGYUN_CLUSTER_SECRET``) it is wrapped by the coordinator (``serving/cluster.py``), so that
exactly one of them owns each deployment's replicas and the others route to them; a gateway
outside any group runs its own replicas, whoever else shares its database.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lingyun.serving import replica_auth
from lingyun.serving.cluster import Coordinator
from lingyun.serving.local import LocalSupervisor
from lingyun.serving.pool import PooledSupervisor

if TYPE_CHECKING:
    from lingyun.config import Settings
    from lingyun.serving.supervisor import Supervisor
    from lingyun.store.db import Database


def make_supervisor(settings: Settings, db: Database) -> Supervisor:
    inner: PooledSupervisor
    if settings.ray_address:
        from lingyun.serving.ray_supervisor import RaySupervisor

        inner = RaySupervisor(settings.ray_address, instance=_actor_prefix(settings))
    else:
        inner = LocalSupervisor(settings.data_dir)
    if replica_auth.cluster_secret() is None:
        return inner  # no group to share replicas with (its members could not call them)
    return Coordinator(inner, db, owner=settings.instance_owner())


def _actor_prefix(settings: Settings) -> str:
    return "lingyun-" + "".join(c if c.isalnum() else "-" for c in settings.instance_owner())
