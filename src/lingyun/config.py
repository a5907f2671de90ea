"""Settings (env ``LINGYUN_*``, CLI flags, optional YAML file) and deployment declarations.

A YAML config may hold server settings at the top level and a ``models:`` list; CLI flags win
over the file, the file over the environment.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class DeploymentConfig(BaseModel):
    """One entry of ``models:``: a public model name served by an engine."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    engine: str
    model: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=0, le=64)
    max_inflight: int | None = Field(default=None, ge=1)
    # Seconds a request may wait for a free slot (overrides the top-level queue_timeout_s).
    queue_timeout_s: float | None = Field(default=None, gt=0)
    # openai-compatible upstreams
    provider: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    region: str | None = None
    # later issues: autoscaling, placement, failover
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    target_inflight: int | None = Field(default=None, ge=1)
    idle_timeout_s: float | None = Field(default=None, gt=0)
    # How long load must stay above / below target before the autoscaler adds / removes a
    # replica (defaults in serving/autoscale.py: 2 s up, 30 s down).
    scale_up_delay_s: float | None = Field(default=None, ge=0)
    scale_down_delay_s: float | None = Field(default=None, ge=0)
    resources: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        from lingyun.engines.registry import ENGINES

        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; choose one of {sorted(ENGINES)}")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINGYUN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".lingyun")
    database_url: str | None = None
    config_file: Path | None = None
    redis_url: str | None = None
    # Request bodies above this are refused with 413 before they are parsed.
    max_body_bytes: int = 4 * 1024 * 1024
    # Prompt text is never stored unless this is on.
    store_prompts: bool = False
    # Seconds a replica may take to answer before the gateway gives up.
    upstream_timeout_s: float = 600.0
    # Who goes next from a full deployment's queue: "vtc" (tenant-fair) or "fcfs".
    scheduler: Literal["vtc", "fcfs"] = "vtc"
    # Seconds a request may wait for a free replica slot before a 503.
    queue_timeout_s: float = Field(default=30.0, gt=0)
    # Retries and fallbacks may add this share of a deployment's requests, plus a trickle.
    retry_budget_ratio: float = Field(default=0.2, ge=0)
    retry_budget_min_per_s: float = Field(default=5.0, ge=0)
    # How long a request waits for a deployment scaled to zero to start a replica.
    activation_timeout_s: float = Field(default=60.0, gt=0)
    # VTC's charge per prompt token (at admission) and per output token (as it streams).
    vtc_input_weight: float = Field(default=1.0, ge=0)
    vtc_output_weight: float = Field(default=2.0, ge=0)
    # Reserve, price and bill every request (off only for benchmarks' comparison).
    metering: bool = True
    # This gateway's name in reservation leases; defaults to host:port. Several gateways
    # sharing a database need distinct names.
    instance_name: str | None = None
    # Run replicas as actors on this Ray cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``)
    # instead of as child processes; see docs/multi-node.md.
    ray_address: str | None = None
    models: list[DeploymentConfig] | None = None
    # Batch API: where files live (default <data_dir>/files), upload limits, this gateway's
    # batch lines in flight, and unfinished batches a tenant may have.
    files_dir: Path | None = None
    batch_max_file_bytes: int = Field(default=200 * 1024 * 1024, gt=0)
    batch_max_lines: int = Field(default=50_000, gt=0)
    batch_concurrency: int = Field(default=32, gt=0)
    batch_max_active_per_tenant: int = Field(default=100, gt=0)

    def instance_owner(self) -> str:
        return self.instance_name or f"{socket.gethostname()}:{self.port}"

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'lingyun.db').resolve()}"

    def deployments(self) -> list[DeploymentConfig]:
        """Declared deployments; a fresh install serves the packaged embedding model."""
        if self.models is not None:
            return self.models
        return [
            DeploymentConfig(
                name=DEFAULT_EMBEDDING_MODEL, engine="embeddings", model=DEFAULT_EMBEDDING_MODEL
            )
        ]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Environment, then the YAML file, then explicit overrides (``None`` means unset)."""
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            raw = yaml.safe_load(config_file.read_text()) or {}
        except OSError as exc:
            raise ValueError(f"cannot read config file {config_file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ValueError(f"config file {config_file} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"config file {config_file} must be a mapping at the top level")
        values.update(raw)
        values["config_file"] = config_file
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ValueError(f"invalid configuration: {exc}") from exc
