"""Fixtures for supervisor tests; the stand-in engines live in ``supervisor_standins.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from lingyun.serving.autoscale import ScalingTimings
from lingyun.serving.health import HealthPolicy
from lingyun.serving.local import LocalSupervisor

# Fast timings so the whole suite runs in seconds; each test overrides what it exercises.
FAST: dict[str, Any] = {
    "startup_interval_s": 0.05,
    "interval_s": 0.2,
    "probe_timeout_s": 1.0,
    "failure_threshold": 1,
    "backoff_initial_s": 0.1,
    "backoff_max_s": 0.4,
    "backoff_reset_after_s": 60.0,
    "stop_grace_s": 2.0,
}


@pytest.fixture
async def supervisor(
    tmp_path: Path, anyio_backend: str
) -> AsyncIterator[Callable[..., LocalSupervisor]]:
    """Factory: ``supervisor(engines, scaling=None, **policy)``; every supervisor made is stopped after."""
    made: list[LocalSupervisor] = []

    def make(
        engines: dict[str, Any], scaling: ScalingTimings | None = None, **policy: float
    ) -> LocalSupervisor:
        sup = LocalSupervisor(
            tmp_path / "data",
            engines=engines,
            policy=HealthPolicy(**{**FAST, **policy}),
            scaling=scaling,
        )
        made.append(sup)
        return sup

    yield make
    for sup in made:
        await sup.stop()
