"""What an engine adapter reads and produces: a deployment in, a replica process to start or
an endpoint to call out.

Kept apart from the registry so adapters can import these without importing every other
adapter (the registry imports them all). Engines see a deployment through the ``Deployment``
protocol, not ``lingyun.config``: the config validates engine names against the registry, so
the engines sit below it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from lingyun.engines.dialect import OPENAI_DIALECT, Dialect


class Adapter(Protocol):
    """A LoRA adapter served beside its base model (``config.AdapterConfig``)."""

    @property
    def name(self) -> str: ...
    @property
    def path(self) -> str: ...


class Deployment(Protocol):
    """What an engine reads of a deployment (``config.DeploymentConfig`` is one)."""

    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str | None: ...
    @property
    def args(self) -> Mapping[str, Any]: ...
    @property
    def provider(self) -> str | None: ...
    @property
    def base_url(self) -> str | None: ...
    @property
    def api_key_env(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def adapters(self) -> Sequence[Adapter]: ...


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

    def process(self, dep: Deployment, host: str, port: int) -> ProcessSpec: ...


@runtime_checkable
class UpstreamEngine(Protocol):
    name: str

    def upstream(self, dep: Deployment) -> UpstreamSpec: ...


def env_arg(deployment: str, value: object) -> dict[str, str]:
    """``args.env`` of a process engine: extra environment variables for the replica."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"deployment {deployment!r}: args.env must be a mapping of strings")
    return {str(k): str(v) for k, v in value.items()}


def ready_timeout_arg(deployment: str, value: object, default: float) -> float:
    """``args.ready_timeout_s`` of a process engine, ``default`` when unset."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"deployment {deployment!r}: args.ready_timeout_s must be > 0 seconds")
    return float(value)
