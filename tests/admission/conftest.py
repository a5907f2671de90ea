"""Helpers for admission tests against real servers."""

from __future__ import annotations

from tests.support.provision import new_key, set_limits
from tests.support.sim_worker import SimWorker, sim_worker

__all__ = ["RULE_REFRESH_WAIT_S", "SimWorker", "new_key", "set_limits", "sim_worker"]

# Rule changes reach a gateway within its one-second refresh.
RULE_REFRESH_WAIT_S = 1.5
