"""Every upstream deployment's channels, built from the declarations and kept across reloads.

A channel inherits what it leaves unset (provider, base_url, api_key_env, region, model) from
its deployment, and is turned into an endpoint by the ``openai-compatible`` engine exactly as a
single-endpoint deployment is. A channel whose key variable is unset is listed with its error
and never picked; the others serve. Breaker state survives a reload of an unchanged channel.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING

from lingyun.config import ChannelConfig, DeploymentConfig
from lingyun.serving.channels.breaker import Breaker, BreakerSettings, Transition
from lingyun.serving.channels.channels import Channel, ChannelSet
from lingyun.serving.replica import Replica

if TYPE_CHECKING:
    from lingyun.engines.base import UpstreamEngine

logger = logging.getLogger(__name__)


def channel_names(dep: DeploymentConfig) -> list[str]:
    names = [c.name or f"ch{i}" for i, c in enumerate(dep.channels)]
    if len(set(names)) != len(names):
        raise ValueError(f"deployment {dep.name!r}: channel names must be unique, got {names}")
    return names


def channel_deployment(dep: DeploymentConfig, ch: ChannelConfig) -> DeploymentConfig:
    """The single-endpoint deployment one channel amounts to."""
    update = {
        key: getattr(ch, key)
        for key in ("provider", "base_url", "api_key_env", "region", "model")
        if getattr(ch, key) is not None
    }
    return dep.model_copy(update={**update, "channels": []})


class ChannelRegistry:
    def __init__(
        self, engine: UpstreamEngine | None = None, rng: random.Random | None = None
    ) -> None:
        self._engine = engine
        self._rng = rng or random.Random()
        self._sets: dict[str, ChannelSet] = {}
        self._configs: dict[tuple[str, str], tuple[DeploymentConfig, ChannelConfig]] = {}
        # Transitions not yet written to the audit log (drained by the keeper).
        self.pending: list[tuple[Channel, Transition]] = []

    def get(self, deployment: str) -> ChannelSet | None:
        return self._sets.get(deployment)

    def channels(self) -> list[Channel]:
        return [c for s in self._sets.values() for c in s.channels]

    def find(self, deployment: str, channel: str) -> Channel | None:
        found = self._sets.get(deployment)
        return found.get(channel) if found is not None else None

    def apply(self, deployments: Iterable[DeploymentConfig]) -> None:
        sets: dict[str, ChannelSet] = {}
        configs: dict[tuple[str, str], tuple[DeploymentConfig, ChannelConfig]] = {}
        for dep in deployments:
            if not dep.channels:
                continue
            settings = BreakerSettings.from_mapping(dep.breaker)
            built = []
            for name, ch in zip(channel_names(dep), dep.channels, strict=True):
                key = (dep.name, name)
                old = self.find(*key)
                configs[key] = (_without_channels(dep), ch)
                if old is not None and self._configs.get(key) == configs[key]:
                    built.append(old)
                    continue
                built.append(self._build(dep, name, ch, settings))
            sets[dep.name] = ChannelSet(dep.name, built, self._rng)
        self._sets, self._configs = sets, configs

    def _build(
        self, dep: DeploymentConfig, name: str, ch: ChannelConfig, settings: BreakerSettings
    ) -> Channel:
        holder: list[Channel] = []
        breaker = Breaker(settings, lambda t: self._changed(holder[0], t))
        channel = Channel(deployment=dep.name, name=name, config=ch, breaker=breaker)
        holder.append(channel)
        try:
            spec = self._upstream_engine().upstream(channel_deployment(dep, ch))
        except ValueError as exc:
            channel.error = str(exc)
            logger.error("channel %s/%s cannot serve: %s", dep.name, name, exc)
            return channel
        channel.replica = Replica(
            deployment=dep.name,
            replica_id=f"{dep.name}/{name}",
            base_url=spec.base_url,
            model_id=spec.model_id,
            headers=dict(spec.headers),
            dialect=spec.dialect,
            healthy=True,
        )
        return channel

    def _upstream_engine(self) -> UpstreamEngine:
        if self._engine is None:
            from lingyun.engines.upstream.engine import OpenAICompatibleEngine

            self._engine = OpenAICompatibleEngine()
        return self._engine

    def _changed(self, channel: Channel, t: Transition) -> None:
        logger.warning(
            "channel %s/%s: %s -> %s (%s)",
            channel.deployment, channel.name, t.old.value, t.new.value, t.reason,
        )  # fmt: skip
        self.pending.append((channel, t))


def _without_channels(dep: DeploymentConfig) -> DeploymentConfig:
    return dep.model_copy(update={"channels": []})
