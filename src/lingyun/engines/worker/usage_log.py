"""The engine's own record of what it generated, for audits and ledger checks."""

from __future__ import annotations

import json
from typing import Any


class UsageLog:
    """What this engine generated, per gateway request id, one JSON line per request.

    Written as each request ends (line-buffered, so it survives the process dying), for
    audits and for tests that compare the gateway's ledger with the engine's own counts.
    """

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def write(
        self, request_id: str, usage: dict[str, Any], outcome: str, traceparent: str | None = None
    ) -> None:
        record = {"request_id": request_id, "outcome": outcome, **usage}
        if traceparent:  # the gateway's relay span, when traces are on
            record["traceparent"] = traceparent
        self._file.write(json.dumps(record) + "\n")
