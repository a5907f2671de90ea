"""One request's prompt and answer text, collected for prompt logging (``prompt_log.py``).

Made only for a request whose project turned prompt logging on (``hooks.transcribe``); the
relay hands it each streamed chunk or the whole answer.
"""

from __future__ import annotations

import json
from typing import Any

# What of a request body is its prompt, by endpoint field.
PROMPT_FIELDS = ("messages", "prompt", "input", "query", "documents")


class Transcript:
    """One request's prompt and the text streamed or answered back."""

    __slots__ = ("parts", "prompt", "retention_s")

    def __init__(self, body: dict[str, Any], retention_s: int) -> None:
        self.prompt = json.dumps(
            {k: body[k] for k in PROMPT_FIELDS if k in body}, ensure_ascii=False
        )
        self.retention_s = retention_s
        self.parts: list[str] = []

    def chunk(self, chunk: dict[str, Any]) -> None:
        """A streamed chunk: its content deltas (chat) or text (completions)."""
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, dict) else None
            piece = piece if piece is not None else choice.get("text")
            if isinstance(piece, str):
                self.parts.append(piece)

    def answer(self, payload: dict[str, Any]) -> None:
        """A whole answer: each choice's message content or text."""
        for choice in payload.get("choices") or ():
            message = choice.get("message") or {}
            text = message.get("content") if isinstance(message, dict) else None
            text = text if text is not None else choice.get("text")
            if isinstance(text, str):
                self.parts.append(text)
