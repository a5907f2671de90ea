"""Byte-level edits of an upstream's JSON: the relay's fast path, which spares re-encoding
a chunk when only the model name or the engine's continuous usage must change."""

from __future__ import annotations

import json
from typing import Any


def without_usage(raw: bytes, usage: Any) -> bytes | None:
    """The chunk's bytes with its trailing ``"usage":{...}`` set to null, when usage is
    the last field (as vLLM and our worker write it); None means re-encode instead."""
    at = raw.rfind(b',"usage":')
    if at < 0 or not raw.endswith(b"}"):
        return None
    try:
        if json.loads(raw[at + 9 : -1]) != usage:
            return None
    except ValueError:
        return None
    return raw[:at] + b',"usage":null}'


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
