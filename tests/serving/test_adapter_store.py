"""Adapters added at run time: stored with an audit event, attached to their base deployment."""

from __future__ import annotations

from pathlib import Path

import pytest

from lingyun.config import AdapterConfig, DeploymentConfig
from lingyun.errors import InvalidRequestError, NotFoundError
from lingyun.serving.adapters import AdapterStore, attach
from lingyun.store.db import Database
from lingyun.tenancy.audit import CLI_ACTOR, list_events

pytestmark = pytest.mark.anyio

BASE = DeploymentConfig(
    name="tiny-chat", engine="transformers", model="/m",
    adapters=[AdapterConfig(name="declared", path="/a")],
)  # fmt: skip
SIM = DeploymentConfig(name="sim", engine="simulator")


async def test_add_attach_remove(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    await db.migrate()
    try:
        store = AdapterStore(db)
        await store.add([BASE, SIM], "tiny-chat", "added", "/b", CLI_ACTOR)
        with pytest.raises(InvalidRequestError, match="taken"):
            await store.add([BASE, SIM], "tiny-chat", "declared", "/c", CLI_ACTOR)
        with pytest.raises(InvalidRequestError, match="engine"):
            await store.add([BASE, SIM], "sim", "x", "/c", CLI_ACTOR)
        with pytest.raises(NotFoundError):
            await store.add([BASE, SIM], "nope", "x", "/c", CLI_ACTOR)
        deps = attach([BASE, SIM], await store.list())
        assert [a.name for a in deps[0].adapters] == ["declared", "added"]
        assert deps[1] == SIM
        await store.remove("added", CLI_ACTOR)
        assert attach([BASE, SIM], await store.list()) == [BASE, SIM]
        actions = [e.action for e in await list_events(db)]
        assert actions[:2] == ["adapter.remove", "adapter.add"]
    finally:
        await db.close()
