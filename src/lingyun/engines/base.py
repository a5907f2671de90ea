"""What an engine adapter produces: a replica process to start, or an endpoint to call.

Kept apart from the registry so adapters can import these without importing every other
adapter (the registry imports them all).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lingyun.engines.dialect import OPENAI_DIALECT, Dialect

if TYPE_CHECKING:
    from lingyun.config import DeploymentConfig


@dataclass(frozen=True)
class ProcessSpec:
    """A replica process: argv/env to start it and where to ask whether it is ready."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/health"
    # Model loading can be slow; the supervisor waits this long for the first healthy answer.
    ready_timeout_s: float = 300.0
    # The "model" value the process expects in requests.
    model_id: str = ""


@dataclass(frozen=True)
class UpstreamSpec:
    """An endpoint someone else runs."""

    base_url: str
    model_id: str
    headers: dict[str, str] = field(default_factory=dict)
    dialect: Dialect = OPENAI_DIALECT


@runtime_checkable
class ProcessEngine(Protocol):
    name: str

    def process(self, dep: DeploymentConfig, host: str, port: int) -> ProcessSpec: ...


@runtime_checkable
class UpstreamEngine(Protocol):
    name: str

    def upstream(self, dep: DeploymentConfig) -> UpstreamSpec: ...
