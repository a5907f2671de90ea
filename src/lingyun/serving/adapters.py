"""LoRA adapters added at run time: stored, then merged into their base deployments.

``attach`` is what every gateway applies after merging the config file's deployments with
stored ones: an adapter row joins its base deployment's ``adapters`` (the config file's own
declarations win a name clash). A changed adapter list is a changed deployment, so the
supervisor restarts the base's replicas with the new list (a transformers replica loads each
adapter on first use anyway).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select

from lingyun.config import AdapterConfig, DeploymentConfig
from lingyun.errors import InvalidRequestError, NotFoundError
from lingyun.store.adapters import AdapterRow
from lingyun.store.db import Database
from lingyun.tenancy.audit import Actor, record

logger = logging.getLogger(__name__)

ADAPTER_ENGINES = frozenset({"transformers", "vllm"})


class AdapterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self) -> list[AdapterRow]:
        async with self.db.session() as s:
            return list((await s.scalars(select(AdapterRow).order_by(AdapterRow.name))).all())

    async def add(
        self, deployments: Sequence[DeploymentConfig], base: str, name: str, path: str,
        actor: Actor,
    ) -> None:  # fmt: skip
        dep = next((d for d in deployments if d.name == base), None)
        if dep is None:
            raise NotFoundError(f"No deployment {base!r}.", param="base")
        if dep.engine not in ADAPTER_ENGINES:
            raise InvalidRequestError(
                f"Deployment {base!r} runs engine {dep.engine!r}; LoRA adapters need one of "
                f"{sorted(ADAPTER_ENGINES)}.",
                param="base",
            )
        AdapterConfig(name=name, path=path)  # validates the name
        taken = {
            n for d in deployments for n in (d.name, *d.aliases, *(a.name for a in d.adapters))
        }
        async with self.db.session() as s, s.begin():
            if name in taken or await s.get(AdapterRow, name) is not None:
                raise InvalidRequestError(f"The model name {name!r} is taken.", param="name")
            s.add(AdapterRow(name=name, base=base, path=path))
            record(s, actor, "adapter.add", target_type="adapter", target_id=name,
                   details={"base": base, "path": path})  # fmt: skip

    async def remove(self, name: str, actor: Actor) -> None:
        async with self.db.session() as s, s.begin():
            row = await s.get(AdapterRow, name)
            if row is None:
                raise NotFoundError(f"No stored adapter {name!r}.", param="name")
            await s.delete(row)
            record(s, actor, "adapter.remove", target_type="adapter", target_id=name,
                   details={"base": row.base})  # fmt: skip


def attach(
    deployments: list[DeploymentConfig], rows: Sequence[AdapterRow]
) -> list[DeploymentConfig]:
    by_base: dict[str, list[AdapterConfig]] = {}
    for row in rows:
        by_base.setdefault(row.base, []).append(AdapterConfig(name=row.name, path=row.path))
    known = {d.name for d in deployments}
    orphans = sorted(r.name for r in rows if r.base not in known)
    if orphans:
        logger.warning("ignoring stored adapters %s: their base deployment is gone", orphans)
    out = []
    for dep in deployments:
        extra = by_base.get(dep.name)
        if extra:
            have = {a.name for a in dep.adapters}
            adapters = [*dep.adapters, *(a for a in extra if a.name not in have)]
            dep = dep.model_copy(update={"adapters": adapters})
        out.append(dep)
    return out
