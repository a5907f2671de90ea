"""The data side of mid-stream failover: the continuation request and the stitch."""

from __future__ import annotations

from typing import Any

from lingyun.gateway.reply import ReplyLog, Stitch, continuation_body

BODY: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _chunk(delta: dict[str, Any], usage: dict[str, Any] | None = None, **kw: Any) -> Any:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
    return {"id": kw.get("id", "b"), "created": kw.get("created", 2), "choices": [choice],
            "usage": usage}  # fmt: skip


def test_the_continuation_resends_the_reply_and_what_is_left_of_the_bound() -> None:
    body = continuation_body({**BODY, "max_tokens": 10}, "Hel", 3)
    assert body is not None
    assert body["messages"][-1] == {"role": "assistant", "content": "Hel"}
    assert body["continue_final_message"] is True and body["add_generation_prompt"] is False
    assert body["max_tokens"] == 7 and BODY["messages"] == [{"role": "user", "content": "hi"}]
    assert continuation_body({**BODY, "max_completion_tokens": 3}, "Hel", 3) is None  # spent
    assert "continue_final_message" not in (continuation_body(BODY, "", 0) or {})  # nothing yet


def test_the_stitch_reads_as_the_first_stream_and_bills_in_the_tenants_terms() -> None:
    log = ReplyLog()
    log.feed(_chunk({"role": "assistant", "content": ""}, id="a", created=1))
    log.feed(_chunk({"content": "Hel"}, id="a", created=1))
    stitch = Stitch(log, (20, 4, 3))  # the client had 20 prompt (4 cached), 3 completion
    assert stitch(_chunk({"role": "assistant", "content": ""})) is None  # a second opening
    sibling = {"prompt_tokens": 23, "completion_tokens": 2, "total_tokens": 25}
    out = stitch(_chunk({"content": "lo"}, sibling))
    assert out is not None and (out["id"], out["created"]) == ("a", 1)
    assert out["usage"] == {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25,
                            "prompt_tokens_details": {"cached_tokens": 4}}  # fmt: skip
    assert log.platform_prompt_tokens == 23  # the sibling's re-prefill: the platform's cost
    log.feed(out)
    assert log.text() == "Hello" and log.resumable
    log.feed(_chunk({"tool_calls": [{"index": 0}]}))
    assert not log.resumable
