"""The pieces of mid-stream failover that are plain data: what of a reply reached the client,
the request that continues it, and the edit that stitches the continuation on.

Token accounting (the invariant this module owns): the tenant pays the first replica's
prompt once, plus every completion token its client received, across replicas. A sibling
reports ``prompt_tokens`` = the conversation plus the reply so far (it prefilled both) and
``completion_tokens`` = what it added; ``Stitch`` rewrites that to the tenant's view (first
prompt, completion so far + added) before the relay, the meter or the client sees it, and
keeps the sibling's prompt count as ``ReplyLog.platform_prompt_tokens``: the re-prefill is
the platform's cost, recorded on the usage row (settle.py), never billed.
"""

from __future__ import annotations

from typing import Any


class ReplyLog:
    """The reply's text as the client received it, and whether it can be continued: one
    choice of plain text (no tool calls, logprobs or reasoning), not yet finished."""

    __slots__ = ("created", "parts", "platform_prompt_tokens", "resumable", "stream_id")

    def __init__(self) -> None:
        self.parts: list[str] = []
        # prompt tokens siblings re-prefilled to continue it: the platform's cost
        self.platform_prompt_tokens = 0
        self.resumable = True
        self.stream_id: object = None
        self.created: object = None

    def feed(self, chunk: dict[str, Any]) -> None:
        if self.stream_id is None:
            self.stream_id, self.created = chunk.get("id"), chunk.get("created")
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if (
                choice.get("index", 0) != 0
                or choice.get("logprobs")
                or choice.get("finish_reason")
                or any(delta.get(k) for k in ("tool_calls", "function_call", "reasoning_content"))
            ):
                self.resumable = False
            content = delta.get("content")
            if isinstance(content, str):
                self.parts.append(content)

    def text(self) -> str:
        return "".join(self.parts)


def continuation_body(body: dict[str, Any], reply: str, received: int) -> dict[str, Any] | None:
    """The request that continues ``reply`` (vLLM's ``continue_final_message``, which our
    worker implements too), with its output bound less the ``received`` tokens; None when
    the bound is spent (nothing is left to continue)."""
    out = dict(body)
    if reply:
        out["messages"] = [*body["messages"], {"role": "assistant", "content": reply}]
        out["continue_final_message"] = True
        out["add_generation_prompt"] = False
    for key in ("max_tokens", "max_completion_tokens"):
        bound = out.get(key)
        if isinstance(bound, int):
            if bound <= received:
                return None
            out[key] = bound - received
    return out


class Stitch:
    """Makes a sibling's chunks read as the first stream's: its id and creation time, no
    second opening role chunk, and usage in the tenant's terms (module docstring)."""

    __slots__ = ("cached", "completion", "platform_before", "prompt", "reply")

    def __init__(self, reply: ReplyLog, counts: tuple[int, int, int]) -> None:
        self.reply = reply
        self.prompt, self.cached, self.completion = counts
        self.platform_before = reply.platform_prompt_tokens

    def __call__(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        choices = chunk.get("choices") or ()
        if choices and all(_opens_turn(c) for c in choices):
            return None
        if self.reply.stream_id is not None:
            chunk["id"], chunk["created"] = self.reply.stream_id, self.reply.created
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            chunk["usage"] = self._tenant_usage(usage)
        return chunk

    def _tenant_usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        self.reply.platform_prompt_tokens = self.platform_before + int(
            usage.get("prompt_tokens") or 0
        )
        completion = self.completion + int(usage.get("completion_tokens") or 0)
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt,
            "completion_tokens": completion,
            "total_tokens": self.prompt + completion,
        }
        if self.cached:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached}
        return out


def _opens_turn(choice: dict[str, Any]) -> bool:
    """The opening chunk of an answer: a role and no text (the client has had one)."""
    delta = choice.get("delta") or {}
    return bool(delta.get("role")) and not delta.get("content") and not choice.get("finish_reason")
