"""The public model name in an upstream body, swapped in its bytes where that is safe."""

from __future__ import annotations

import json
from typing import Any


class Renamer:
    """Puts the public model name in an upstream JSON body, in its bytes when that is safe:
    the body names the replica's model id exactly once, in our compact spelling, so that
    occurrence is the top-level field. Otherwise it answers None and the caller re-encodes."""

    __slots__ = ("new", "old", "public", "served")

    def __init__(self, served: str, public: str) -> None:
        self.served, self.public = served, public
        self.old = b'"model":' + json.dumps(served, ensure_ascii=False).encode()
        self.new = b'"model":' + json.dumps(public, ensure_ascii=False).encode()

    def __call__(self, raw: bytes, payload: dict[str, Any]) -> bytes | None:
        model = payload.get("model")
        if model == self.public:
            return raw
        if model == self.served and raw.count(self.old) == 1:
            return raw.replace(self.old, self.new)
        return None
