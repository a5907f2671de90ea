"""The engine's own record of what it generated, for audits and ledger checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class UsageLog:
    """What this engine generated, per gateway request id, one JSON line per request.

    Written as each request ends (line-buffered, so it survives the process dying), for
    audits and for tests that compare the gateway's ledger with the engine's own counts.
    """

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(self, headers: Mapping[str, str], usage: dict[str, Any], outcome: str) -> None:
        """One line: the gateway's request id (and its relay span's ``traceparent`` when
        traces are on), how the request ended, and the counts."""
        record = {"request_id": headers.get("x-request-id", ""), "outcome": outcome, **usage}
        if traceparent := headers.get("traceparent"):
            record["traceparent"] = traceparent
        self._file.write(json.dumps(record) + "\n")
