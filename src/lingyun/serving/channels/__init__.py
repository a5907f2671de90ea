"""Upstream channels: several endpoints/keys per cloud model, weights, tiers and breakers."""

from __future__ import annotations

from lingyun.serving.channels.breaker import BreakerSettings, ChannelState
from lingyun.serving.channels.channels import Channel, ChannelSet
from lingyun.serving.channels.registry import ChannelRegistry

__all__ = ["BreakerSettings", "Channel", "ChannelRegistry", "ChannelSet", "ChannelState"]
