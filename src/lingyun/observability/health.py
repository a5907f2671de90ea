"""Health for orchestrators: ``/healthz`` (the process answers) and ``/readyz`` (send traffic).

Ready means: the database answers within ``DB_TIMEOUT_S``, its schema is at this build's
migration head, and every deployment that must keep a replica (``min_replicas``, else
``replicas``, above 0) has at least one healthy replica. A deployment that cannot start at all
(an unknown engine, a cloud without its API key) is reported but does not hold readiness back:
it will not heal by waiting, and the rest can serve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from lingyun.config import DeploymentConfig
from lingyun.serving.supervisor import DeploymentStatus
from lingyun.store.db import Database

logger = logging.getLogger(__name__)

DB_TIMEOUT_S = 2.0


def migration_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    from lingyun.store.migrate import alembic_config

    return set(ScriptDirectory.from_config(alembic_config()).get_heads())


def minimum(dep: DeploymentConfig) -> int:
    return dep.min_replicas if dep.min_replicas is not None else dep.replicas


@dataclass
class Readiness:
    db: Database
    deployments: Callable[[], Sequence[DeploymentConfig]]
    status: Callable[[], list[DeploymentStatus]]
    heads: set[str]

    async def check(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, Any] = {}
        checks["database"], checks["migrations"] = await self._database()
        waiting: list[str] = []
        broken: dict[str, str] = {}
        by_name = {d.name: d for d in self.status()}
        for dep in self.deployments():
            st = by_name.get(dep.name)
            if st is not None and st.error:
                broken[dep.name] = st.error
            elif minimum(dep) > 0 and (st is None or st.healthy_replicas == 0):
                waiting.append(dep.name)
        checks["replicas"] = "ok" if not waiting else {"not_ready": sorted(waiting)}
        if broken:
            checks["unavailable_deployments"] = broken
        ready = checks["database"] == "ok" and checks["migrations"] == "ok" and not waiting
        return ready, checks

    async def _database(self) -> tuple[str, str]:
        try:
            async with asyncio.timeout(DB_TIMEOUT_S):
                async with self.db.engine.connect() as conn:
                    rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
                    versions = {r[0] for r in rows}
        except Exception as exc:  # any driver's error means "not reachable"
            logger.warning("readiness: database unreachable: %s", type(exc).__name__)
            return f"unreachable: {type(exc).__name__}", "unknown"
        if versions != self.heads:
            return "ok", f"at {sorted(versions)}, expected {sorted(self.heads)}"
        return "ok", "ok"
