"""Deployments declared with ``lingyun deploy`` (stored), merged with the config file's."""

from __future__ import annotations

import logging

from pydantic import ValidationError
from sqlalchemy import delete, select

from lingyun.config import DeploymentConfig, describe
from lingyun.errors import NotFoundError
from lingyun.store.db import Database
from lingyun.store.models import DeploymentRow, utcnow

logger = logging.getLogger(__name__)


class DeploymentStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def save(self, dep: DeploymentConfig) -> None:
        spec = dep.model_dump(exclude_defaults=True)
        async with self.db.session() as s:
            row = await s.get(DeploymentRow, dep.name)
            if row is None:
                s.add(DeploymentRow(name=dep.name, spec=spec))
            else:
                row.spec = spec
                row.updated_at = utcnow()
            await s.commit()

    async def list(self) -> list[DeploymentConfig]:
        async with self.db.session() as s:
            rows = (await s.scalars(select(DeploymentRow).order_by(DeploymentRow.name))).all()
        deployments = []
        for row in rows:
            try:
                deployments.append(DeploymentConfig.model_validate(row.spec))
            except ValidationError as exc:
                # Stored before a rule tightened (an api_key_env no longer allowed): not
                # served, and the rest still are.
                logger.error(
                    "stored deployment %s is refused and not served: %s", row.name, describe(exc)
                )
        return deployments

    async def remove(self, name: str) -> None:
        async with self.db.session() as s:
            result = await s.execute(delete(DeploymentRow).where(DeploymentRow.name == name))
            await s.commit()
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFoundError(f"No stored deployment {name!r}.", param="name", code="not_found")


def merge(
    configured: list[DeploymentConfig], stored: list[DeploymentConfig]
) -> list[DeploymentConfig]:
    """The config file's deployments, then stored ones. The file wins a name clash: a stored
    deployment that shadows one is ignored (with a warning), so one mistaken ``lingyun
    deploy`` cannot take down a model the operator declared."""
    names = {d.name for d in configured}
    clash = sorted(d.name for d in stored if d.name in names)
    if clash:
        logger.warning(
            "ignoring stored deployments %s: the config file declares them; "
            "remove them with `lingyun undeploy NAME`",
            clash,
        )
    return [*configured, *(d for d in stored if d.name not in names)]
