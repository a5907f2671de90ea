"""Settings (env ``LINGYUN_*``, CLI flags, optional YAML file) and deployment declarations.

A YAML config may hold server settings at the top level and a ``models:`` list; CLI flags win
over the file, the file over the environment.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from lingyun.engines.registry import CONTINUES_REPLIES, ENGINES
from lingyun.engines.upstream.outbound import check_base_url, check_key_env

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


class RoutingOptions(BaseModel):
    """Tuning of a deployment's router (``gateway/routing/``); the defaults suit most."""

    model_config = ConfigDict(extra="forbid")

    # Bytes of canonical prompt per hashed block (about 64 tokens of English).
    block_bytes: int = Field(default=256, ge=16)
    # Blocks the prefix index remembers per replica (LRU), and sessions per deployment.
    index_blocks: int = Field(default=65536, ge=1)
    sessions: int = Field(default=100_000, ge=1)
    # Load guard: a replica is a hot spot, never chosen for affinity, when its load exceeds
    # the least-loaded replica's by more than imbalance_abs and by more than imbalance_ratio.
    load_guard: bool = True
    imbalance_abs: float = Field(default=8, ge=0)
    imbalance_ratio: float = Field(default=1.5, ge=1)
    # Where a prompt no replica holds goes: the least loaded, or (several gateways) the
    # replica its first ``placement_blocks`` blocks hash to, so every gateway agrees.
    placement: Literal["least-loaded", "consistent-hash"] = "least-loaded"
    placement_blocks: int = Field(default=4, ge=1)


class ChannelConfig(BaseModel):
    """One upstream endpoint/key of an ``openai-compatible`` deployment (serving/channels)."""

    model_config = ConfigDict(extra="forbid")

    # Unique within the deployment; defaults to ch0, ch1, ... in declaration order.
    name: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    provider: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    region: str | None = None
    model: str | None = None
    weight: float = Field(default=1.0, gt=0)
    # Lower tiers are tried first; a higher tier only when every channel below is unusable.
    priority: int = Field(default=0, ge=0)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class AdapterConfig(BaseModel):
    """A LoRA adapter on a base deployment: a model of its own in the catalog (own prices,
    grants, limits, billing), served by the base deployment's replicas."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/@-]*$")
    path: str = Field(min_length=1)


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
    # Engine signals (serving/autoscale.py): requests waiting inside the engine, and KV-cache
    # usage (0-1), per replica on average, where the engine exports them.
    target_queue: float | None = Field(default=None, gt=0)
    target_kv_usage: float | None = Field(default=None, gt=0, le=1)
    idle_timeout_s: float | None = Field(default=None, gt=0)
    # How long load must stay above / below target before the autoscaler adds / removes a
    # replica (defaults in serving/autoscale.py: 2 s up, 30 s down).
    scale_up_delay_s: float | None = Field(default=None, ge=0)
    scale_down_delay_s: float | None = Field(default=None, ge=0)
    resources: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[str] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    # The most output tokens one request may ask for (the model's context); a larger
    # max_tokens is refused with 400 before anything is reserved or sent.
    max_output_tokens: int | None = Field(default=None, ge=1)

    def output_bound(self) -> int:
        """Output tokens per choice when a client sets no limit: the bound a request's
        reservation is sized for, and the ``max_tokens`` sent upstream, so the engine
        cannot overrun what was reserved."""
        if self.max_output_tokens is not None:
            return self.max_output_tokens
        return int(self.args.get("max_output_tokens", DEFAULT_MAX_OUTPUT_TOKENS))

    def bounds_output(self) -> bool:
        """Did the operator declare a bound (``max_output_tokens``, or in ``args``)?"""
        return self.max_output_tokens is not None or "max_output_tokens" in self.args

    # Replica choice: fewest in flight, prompt-prefix affinity, or session affinity (both
    # guarded by load); share_prefix_cache lets tenants' identical prompts share affinity.
    routing: Literal["least-inflight", "prefix", "session"] = "least-inflight"
    routing_options: RoutingOptions = Field(default_factory=RoutingOptions)
    share_prefix_cache: bool = False
    # openai-compatible: several upstream endpoints/keys with weights, tiers and breakers.
    channels: list[ChannelConfig] = Field(default_factory=list)
    # Breaker thresholds for the channels (serving/channels/breaker.py has the defaults).
    breaker: dict[str, float] = Field(default_factory=dict)
    # LoRA adapters served on this base deployment's replicas (transformers, vllm).
    adapters: list[AdapterConfig] = Field(default_factory=list)
    # A stream whose replica dies mid-way continues on a sibling (gateway/resume.py); only
    # for engines that continue a reply exactly, so it is off unless asked for.
    mid_stream_failover: bool = False

    @field_validator("mid_stream_failover")
    @classmethod
    def _can_continue(cls, value: bool, info: ValidationInfo) -> bool:
        engine = info.data.get("engine")
        if value and engine not in CONTINUES_REPLIES:
            raise ValueError(
                f"mid_stream_failover needs an engine that continues a partial reply exactly "
                f"({', '.join(sorted(CONTINUES_REPLIES))}); engine {engine!r} cannot, so "
                "remove the option from this deployment"
            )
        return value

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; choose one of {sorted(ENGINES)}")
        return value

    # What the gateway may call, and which secret it may send: engines/upstream/outbound.py.
    @field_validator("api_key_env")
    @classmethod
    def _allowed_key_env(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _named(info, check_key_env, value)

    @field_validator("base_url")
    @classmethod
    def _safe_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _named(info, check_base_url, value)


def _named(info: ValidationInfo, check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise ValueError(f"deployment {info.data.get('name')!r}: {exc}") from None


DEFAULT_MAX_OUTPUT_TOKENS = 4096


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LINGYUN_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".lingyun")
    database_url: str | None = None
    config_file: Path | None = None
    redis_url: str | None = None
    # Redis unreachable: refuse requests that limits apply to with 503 (closed) or admit them
    # without limits (open). See admission/redis_limiter.py.
    rate_limits_without_redis: Literal["closed", "open"] = "closed"
    # Request bodies above this are refused with 413 before they are parsed (api/body_limit.py);
    # the control plane's (/admin, /console) are small.
    max_body_bytes: int = 4 * 1024 * 1024
    admin_max_body_bytes: int = Field(default=1024 * 1024, gt=0)
    # Control-plane requests per client address (api/control_rate.py): sustained and burst.
    control_rate_per_s: float = Field(default=100.0, gt=0)
    control_burst: int = Field(default=500, gt=0)
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
    # Observability (docs/observability.md): Prometheus /metrics, the JSON request log
    # ("stderr", "off" or a file path), engine metrics scraped from replicas, an ops port.
    metrics: bool = True
    metrics_token: str | None = None
    metrics_public: bool = False
    metrics_port: int | None = None
    request_log: str = "stderr"
    replica_metrics_interval_s: float = Field(default=5.0, gt=0)
    # Traces (off by default): spans of each pipeline stage sent to this OTLP/HTTP collector.
    otlp_endpoint: str | None = None
    # Prompt logging, for projects that turn it on: how often expired prompts are purged.
    prompt_log_purge_interval_s: float = Field(default=60.0, gt=0)
    models: list[DeploymentConfig] | None = None
    # Bearer token for /health?details=1 (monitoring); platform admins' tokens work too.
    health_token: str | None = None
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
        raise ValueError(f"invalid configuration: {describe(exc)}") from None


def describe(exc: ValidationError) -> str:
    """A validation error without the values it refused: a refused ``base_url`` may carry a
    password, and this text goes to terminals and logs."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'value'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )
