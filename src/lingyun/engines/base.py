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

# Where our worker reads the per-replica secret its supervisor hands it (never argv).
REPLICA_SECRET_ENV = "LINGYUN_REPLICA_SECRET"


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
    # Environment variables through which the engine takes the replica secret that the
    # supervisor generates for each start (vLLM: VLLM_API_KEY, llama.cpp: API_KEY). Requests
    # without ``Authorization: Bearer <secret>`` are refused by the engine.
    secret_env: tuple[str, ...] = (REPLICA_SECRET_ENV,)


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
