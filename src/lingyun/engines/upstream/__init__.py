"""Upstream OpenAI-compatible endpoints: public-cloud presets, their dialects, the engine.

engine.py      OpenAICompatibleEngine: DeploymentConfig -> UpstreamSpec
presets.py     PRESETS: provider name -> base URLs by region, key env var, dialect
base.py        ProviderDialect: error bodies -> Fault -> LingyunError (the mapping table)
<provider>.py  one dialect per cloud: its documented error codes
"""

from __future__ import annotations

from lingyun.engines.upstream.base import Fault, ProviderDialect
from lingyun.engines.upstream.engine import OpenAICompatibleEngine
from lingyun.engines.upstream.presets import PRESETS, ProviderPreset

__all__ = ["PRESETS", "Fault", "OpenAICompatibleEngine", "ProviderDialect", "ProviderPreset"]
