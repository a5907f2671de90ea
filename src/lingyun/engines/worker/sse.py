"""Server-sent events in OpenAI's shapes, framed cheaply.

Chunks of one response differ only in choice index and text, so each encoder renders the
constant head and tail once per response and pastes the JSON-escaped text in between:
the simulator is driven at thousands of requests per second and this is its hot path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from lingyun.errors import LingyunError

DONE = b"data: [DONE]\n\n"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def event(obj: Any) -> bytes:
    return b"data: " + _dumps(obj).encode() + b"\n\n"


def error_event(exc: LingyunError) -> bytes:
    """An error after the first byte: the status line is gone, so it travels as an event."""
    return event(exc.to_body())


class ChunkEncoder:
    """Base: chunks of one streamed response (chat or text completion)."""

    object_name = ""

    def __init__(
        self,
        response_id: str,
        created: int,
        model: str,
        include_usage: bool,
        usage_so_far: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self._head = (
            f'data: {{"id":{_dumps(response_id)},"object":"{self.object_name}",'
            f'"created":{created},"model":{_dumps(model)},"system_fingerprint":null,"choices":['
        )
        self._tail = "]" + (',"usage":null' if include_usage else "") + "}\n\n"
        self._usage_head = self._head + '],"usage":'
        # With continuous usage stats every chunk carries the usage so far (vLLM does too).
        self._usage_so_far = usage_so_far

    def _choice(self, body: str) -> bytes:
        if self._usage_so_far is not None:
            tail = '],"usage":' + _dumps(self._usage_so_far()) + "}\n\n"
            return (self._head + body + tail).encode()
        return (self._head + body + self._tail).encode()

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The final chunk of ``stream_options.include_usage``: no choices, only usage."""
        return (self._usage_head + _dumps(usage) + "}\n\n").encode()

    def start(self, index: int) -> bytes | None:
        return None

    def text(self, index: int, text: str) -> bytes:
        raise NotImplementedError

    def finish(self, index: int, reason: str) -> bytes:
        raise NotImplementedError


class ChatChunkEncoder(ChunkEncoder):
    object_name = "chat.completion.chunk"

    def start(self, index: int) -> bytes:
        return self._choice(
            f'{{"index":{index},"delta":{{"role":"assistant","content":""}},'
            '"logprobs":null,"finish_reason":null}'
        )

    def text(self, index: int, text: str) -> bytes:
        return self._choice(
            f'{{"index":{index},"delta":{{"content":{_dumps(text)}}},'
            '"logprobs":null,"finish_reason":null}'
        )

    def finish(self, index: int, reason: str) -> bytes:
        return self._choice(
            f'{{"index":{index},"delta":{{}},"logprobs":null,"finish_reason":"{reason}"}}'
        )


class CompletionChunkEncoder(ChunkEncoder):
    object_name = "text_completion"

    def text(self, index: int, text: str) -> bytes:
        return self._choice(
            f'{{"index":{index},"text":{_dumps(text)},"logprobs":null,"finish_reason":null}}'
        )

    def finish(self, index: int, reason: str) -> bytes:
        return self._choice(
            f'{{"index":{index},"text":"","logprobs":null,"finish_reason":"{reason}"}}'
        )
