"""A replica as the gateway sees it: an OpenAI-compatible base URL plus routing state.

Supervisors create replicas and flip ``healthy``; the router reads ``healthy`` and
``inflight``; the relay increments ``inflight`` around each request. All on one event loop,
so plain attributes are enough.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lingyun.engines.dialect import OPENAI_DIALECT, Dialect


@dataclass(eq=False)
class Replica:
    deployment: str
    replica_id: str
    # Base URL ending in /v1; requests go to f"{base_url}/chat/completions" etc.
    base_url: str
    # The "model" value the replica expects (the upstream's id, or the served name).
    model_id: str
    headers: dict[str, str] = field(default_factory=dict)
    dialect: Dialect = OPENAI_DIALECT
    healthy: bool = False
    inflight: int = 0
    # Per-replica capacity for the admission issue; None means unbounded.
    max_inflight: int | None = None
