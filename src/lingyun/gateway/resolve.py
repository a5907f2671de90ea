"""Stage 2: public model name (or alias) -> deployment, checking the tenant may use it.

An unknown model and a model the tenant may not use answer the same 404, so a tenant cannot
probe for models it was not granted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from lingyun.config import DeploymentConfig
from lingyun.errors import NotFoundError
from lingyun.tenancy.service import KeyInfo


class ModelAccess(Protocol):
    def allowed(self, key: KeyInfo, model: str) -> bool: ...


class AllowAll:
    def allowed(self, key: KeyInfo, model: str) -> bool:
        return True


class ModelCatalog:
    def __init__(self, access: ModelAccess | None = None) -> None:
        self._by_name: dict[str, DeploymentConfig] = {}
        self.access: ModelAccess = access or AllowAll()

    def replace(self, deployments: Iterable[DeploymentConfig]) -> None:
        by_name: dict[str, DeploymentConfig] = {}
        for dep in deployments:
            for name in (dep.name, *dep.aliases):
                if name in by_name:
                    raise ValueError(f"model name {name!r} is declared twice; names must be unique")
                by_name[name] = dep
        self._by_name = by_name

    def deployments(self) -> list[DeploymentConfig]:
        seen: dict[str, DeploymentConfig] = {}
        for dep in self._by_name.values():
            seen.setdefault(dep.name, dep)
        return list(seen.values())

    def visible(self, key: KeyInfo) -> list[DeploymentConfig]:
        return [d for d in self.deployments() if self.access.allowed(key, d.name)]

    def usable(self, key: KeyInfo, model: str) -> bool:
        """Whether ``resolve`` would find ``model`` for ``key`` (for fallbacks)."""
        dep = self._by_name.get(model)
        return dep is not None and self.access.allowed(key, dep.name)

    def resolve(self, key: KeyInfo, model: str) -> DeploymentConfig:
        dep = self._by_name.get(model)
        if dep is None or not self.access.allowed(key, dep.name):
            raise NotFoundError(
                f"The model `{model}` does not exist or you do not have access to it.",
                param="model",
            )
        return dep
