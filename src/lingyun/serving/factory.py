"""Which supervisor a server runs: local child processes, or actors on a Ray cluster.

Picked from settings (``ray_address``), wrapped by the coordinator (``serving/cluster.py``) so
that of several gateways sharing a database exactly one owns each deployment's replicas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lingyun.serving.cluster import Coordinator
from lingyun.serving.local import LocalSupervisor
from lingyun.serving.pool import PooledSupervisor

if TYPE_CHECKING:
    from lingyun.config import Settings
    from lingyun.store.db import Database


def make_supervisor(settings: Settings, db: Database) -> Coordinator:
    inner: PooledSupervisor
    if settings.ray_address:
        from lingyun.serving.ray_supervisor import RaySupervisor

        inner = RaySupervisor(settings.ray_address, instance=_actor_prefix(settings))
    else:
        inner = LocalSupervisor(settings.data_dir)
    return Coordinator(inner, db, owner=settings.instance_owner())


def _actor_prefix(settings: Settings) -> str:
    return "lingyun-" + "".join(c if c.isalnum() else "-" for c in settings.instance_owner())
